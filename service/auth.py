"""Phone sign-in, tokens and sessions: the ``/auth/*`` handlers and their routes (the logic is
``service.signin``)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import InvalidToken, ProblemResponse, RedisUnavailable
from gateway.auth import bearer_token, challenge
from gateway.blacklist import Verdict
from gateway.otp import OtpCheck
from gateway.ratelimit import too_many_requests
from gateway.sessions import Rotation
from gateway.tokens import TokenPair
from service.responses import JSON, parse_body, validation_problem
from service.schemas import OtpRequest, PhoneLogin, RefreshRequest
from service.signin import OTP_PER_PHONE, accepted_phone
from service.state import Kapi

Endpoint = Callable[[Request], Awaitable[Response]]


logger = logging.getLogger("service.auth")


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def redis_down() -> ProblemResponse:
    return ProblemResponse(503, "Sign-in is unavailable while Redis is unreachable.", headers={"Retry-After": "2"})


def phone_locked(seconds: int) -> ProblemResponse:
    return ProblemResponse(
        429,
        f"Too many wrong codes for this number; try again in {seconds} s.",
        title="Too Many Requests",
        headers={"Retry-After": str(seconds)},
    )


def bad_phone() -> ProblemResponse:
    return validation_problem([{"field": "phone", "message": "not a valid phone number"}])


def token_body(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "token_type": "bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
    }


def claims_of(request: Request) -> dict[str, Any]:
    claims: dict[str, Any] = request.user.claims
    return claims


async def request_otp(request: Request) -> Response:
    body = await parse_body(request, OtpRequest)
    if isinstance(body, Response):
        return body
    kapi = Kapi.of(request)
    phone = accepted_phone(body.phone, kapi.settings.otp_test_numbers)
    if phone is None:
        return bad_phone()
    decision = await kapi.sign_in.limit_phone(phone)
    if not decision.admitted:
        return too_many_requests(OTP_PER_PHONE, decision)
    fixed = kapi.settings.otp_test_numbers.get(phone)
    code = fixed or kapi.otp.new_code()
    try:
        locked = await kapi.otp.locked_for(phone)
        if locked:
            return phone_locked(locked)
        if fixed is None and not await kapi.sign_in.spend_send_budget():
            logger.error("ALERT: the OTP send budget (OTP_SEND_BUDGET) is spent; codes are refused until it refills")
            return ProblemResponse(
                503, "Sign-in codes cannot be sent right now; try again later.", headers={"Retry-After": "60"}
            )
        await kapi.otp.store(phone, code)
    except RedisUnavailable:
        return redis_down()
    if fixed is None:
        await kapi.otp_sender.send(phone, code)
    return JSON({"phone": phone, "expires_in": kapi.otp.ttl}, status_code=202)


async def login_phone(request: Request) -> Response:
    body = await parse_body(request, PhoneLogin)
    if isinstance(body, Response):
        return body
    kapi = Kapi.of(request)
    phone = accepted_phone(body.phone, kapi.settings.otp_test_numbers)
    if phone is None:
        return bad_phone()
    try:
        check, tries_left = await kapi.otp.verify(phone, body.code)
    except RedisUnavailable:
        return redis_down()
    if check is OtpCheck.PHONE_LOCKED:
        return phone_locked(tries_left)
    if check is OtpCheck.NO_CODE:
        return ProblemResponse(400, "No active code for this number; request one with POST /auth/otp.")
    if check is OtpCheck.LOCKED:
        return ProblemResponse(400, "Too many wrong codes; request a new one with POST /auth/otp.", tries_left=0)
    if check is OtpCheck.WRONG:
        return ProblemResponse(400, "The code is not right.", tries_left=tries_left)
    user_id = await kapi.sign_in.users.get_or_create(phone)
    try:
        ip, user_agent = kapi.client_ip(request.scope), _user_agent(request)
        pair = await kapi.sign_in.open_session(user_id, ip=ip, user_agent=user_agent)
    except RedisUnavailable:
        return redis_down()
    return JSON(token_body(pair))


async def logout(request: Request) -> Response:
    """Revoke the bearer token and end its login in one atomic step. The gateway does not read this
    route's token (``ignore_token``), so a repeated logout, or one with an already expired or revoked
    token, answers 204 as RFC 7009 §2.2 does; only a token that is not ours (bad signature, garbage)
    or none at all is a 401."""
    kapi = Kapi.of(request)
    try:
        token = bearer_token(request.scope)
        if token is None:
            return challenge(None, "A bearer token is required.")
        claims = await kapi.verifier.verify_fetching(token, allow_expired=True)
    except InvalidToken as exc:
        return challenge(exc.description, exc.description)
    try:
        await kapi.blacklist.logout(claims)
    except RedisUnavailable:
        return redis_down()
    return Response(status_code=204)


async def logout_all(request: Request) -> Response:
    kapi = Kapi.of(request)
    try:
        await kapi.blacklist.revoke_all(claims_of(request)["sub"])
    except RedisUnavailable:
        return redis_down()
    return Response(status_code=204)


async def refresh(request: Request) -> Response:
    """Rotate a refresh token. The route authenticates by its body: an expired access token that the
    client still sends in ``Authorization`` does not block it (the gateway ignores that header here)."""
    body = await parse_body(request, RefreshRequest)
    if isinstance(body, Response):
        return body
    kapi = Kapi.of(request)
    try:
        claims = kapi.verifier.verify(body.refresh_token, expected_type="refresh")
    except InvalidToken as exc:
        return challenge(exc.description, exc.description)
    if "sid" not in claims:
        return challenge("The refresh token has no session.", "The refresh token has no session.")
    user_id, sid = claims["sub"], claims["sid"]
    pair = kapi.issuer.issue_pair(user_id, session_id=sid)
    try:
        rotation = await kapi.sessions.rotate(user_id, sid, presented_jti=claims["jti"], new_jti=pair.refresh["jti"])
    except RedisUnavailable:
        return redis_down()
    if rotation is Rotation.REUSED:
        detail = "This refresh token was already used; the session has been ended. Log in again."
        return challenge(detail, detail)
    if rotation is Rotation.NO_SESSION:
        return challenge(Verdict.SESSION_ENDED.description, Verdict.SESSION_ENDED.description)
    return JSON(token_body(pair))


async def list_sessions(request: Request) -> Response:
    kapi = Kapi.of(request)
    claims = claims_of(request)
    try:
        sessions = await kapi.sessions.load(claims["sub"])
    except RedisUnavailable:
        return redis_down()
    return JSON(
        {
            "sessions": [
                {
                    "session_id": s.session_id,
                    "created_at": rfc3339(s.created_at),
                    "last_seen": rfc3339(s.last_seen),
                    "ip": s.ip,
                    "user_agent": s.user_agent,
                    "current": s.session_id == claims.get("sid"),
                }
                for s in sessions
            ]
        }
    )


async def end_session(request: Request) -> Response:
    kapi = Kapi.of(request)
    session_id = request.path_params["session_id"]
    try:
        ended = await kapi.sessions.end(claims_of(request)["sub"], session_id)
    except RedisUnavailable:
        return redis_down()
    if not ended:
        return ProblemResponse(404, "You have no session with that id.")
    return Response(status_code=204)


def _user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:256]


def no_store(handler: Endpoint) -> Endpoint:
    """The sign-in and session routes answer with tokens, codes, phone numbers and session data: no
    cache may keep any of it (RFC 6749 §5.1; RFC 9111 §5.2.2.5), errors included."""

    @functools.wraps(handler)
    async def private(request: Request) -> Response:
        response = await handler(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"  # HTTP/1.0 caches (RFC 6749 §5.1 asks for both)
        return response

    return private


routes = [
    Route("/auth/otp", no_store(request_otp), methods=["POST"], name="request_otp"),
    Route("/auth/login/phone", no_store(login_phone), methods=["POST"], name="login_phone"),
    Route("/auth/logout", no_store(logout), methods=["POST"], name="logout"),
    Route("/auth/logout/all", no_store(logout_all), methods=["POST"], name="logout_all"),
    Route("/auth/refresh", no_store(refresh), methods=["POST"], name="refresh"),
    Route("/auth/session", no_store(list_sessions), methods=["GET"], name="list_sessions"),
    Route("/auth/session/{session_id}", no_store(end_session), methods=["DELETE"], name="end_session"),
]

#: Endpoints where no token is needed (one that is sent must still be valid).
PUBLIC = (
    "POST /auth/otp",
    "POST /auth/login/phone",
)

#: Endpoints whose Authorization header the gateway does not read: refresh authenticates by its body,
#: logout checks its token itself (an already revoked one is fine: logging out twice is a 204).
IGNORE_TOKEN = (
    "POST /auth/refresh",
    "POST /auth/logout",
)
