"""``AuthMiddleware``: bearer JWT authentication with a Redis blacklist, for any ASGI app.

It sets ``scope["user"]`` and ``scope["auth"]`` as Starlette's ``AuthenticationMiddleware`` does,
so ``request.user``, ``request.auth`` and ``starlette.authentication.requires`` work unchanged.
Errors follow RFC 6750: no ``error`` when no token was sent, ``error="invalid_token"`` otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.routing import BaseRoute

from gateway.blacklist import TokenBlacklist, Verdict
from gateway.breaker import RedisUnavailable
from gateway.problem import ProblemResponse
from gateway.routing import EndpointResolver, EndpointSet, is_preflight
from gateway.tokens import Claims, InvalidToken, TokenVerifier
from gateway.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("gateway.auth")


class TokenUser(BaseUser):
    """The authenticated caller: ``identity`` is the token's ``sub``; all claims are kept."""

    def __init__(self, claims: Claims) -> None:
        self.claims = claims

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return str(self.claims["sub"])

    @property
    def identity(self) -> str:
        return str(self.claims["sub"])


class Anonymous(UnauthenticatedUser):
    identity = ""


def credentials_for(claims: Claims) -> AuthCredentials:
    """``authenticated`` plus the token's space-separated ``scope`` claim, if any."""
    scopes = ["authenticated"]
    extra = claims.get("scope")
    if isinstance(extra, str):
        scopes += extra.split()
    return AuthCredentials(scopes)


def _quote(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


def bearer_token(scope: Scope, *, max_header_size: int = 8192) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header, None without one, or
    ``InvalidToken`` for a malformed header (several headers, another scheme, spaces, non-ASCII)."""
    values: list[bytes] = [value for name, value in scope["headers"] if name == b"authorization"]
    if not values:
        return None
    if len(values) > 1:
        raise InvalidToken("malformed", "Send one Authorization header, not several.")
    raw = values[0]
    if len(raw) > max_header_size:
        raise InvalidToken("too_long", "The Authorization header is too large.")
    scheme, _, token = raw.decode("latin-1").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise InvalidToken("malformed", "Use the Bearer scheme: Authorization: Bearer <token>.")
    if not token or " " in token or not token.isascii():
        raise InvalidToken("malformed", "The bearer token is malformed.")
    return token


def challenge(error_description: str | None, detail: str, *, realm: str = "kapi") -> ProblemResponse:
    """A 401 problem with its RFC 6750 challenge: no ``error`` when no token was sent,
    ``error="invalid_token"`` with the description otherwise."""
    header = f'Bearer realm="{_quote(realm)}"'
    if error_description is not None:
        header += f', error="invalid_token", error_description="{_quote(error_description)}"'
    return ProblemResponse(401, detail, headers={"WWW-Authenticate": header})


class AuthFailure(Exception):
    """Raised by :meth:`AuthMiddleware.authenticate`; ``response`` is what to send."""

    def __init__(self, response: ProblemResponse, reason: str) -> None:
        self.response = response
        self.reason = reason


class AuthMiddleware:
    """``public`` lists endpoints where a token is optional (``"GET /listings"``, ``"/health"``), or is
    a predicate on the scope. ``ignore_token`` lists endpoints that authenticate by other means (a
    refresh token in the body, a logout that accepts an already revoked token): their
    ``Authorization`` header is not read here, and an expired token in it does not block them.
    ``routes`` (a Starlette/FastAPI app's ``app.routes``) or ``patterns`` tell it the route
    templates; every endpoint named must match one (a start-up ``ValueError`` otherwise), and a
    request matching none of them is treated as public, so the app can answer its 404. With
    ``blacklist``, each token is checked for revocation in Redis: when Redis cannot answer, the
    request gets 503 unless ``fail_open``. CORS preflights pass through untouched."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        blacklist: TokenBlacklist | None = None,
        public: Iterable[str] | Callable[[Scope], bool] = (),
        ignore_token: Iterable[str] = (),
        routes: Sequence[BaseRoute] = (),
        patterns: Iterable[str] = (),
        resolver: EndpointResolver | None = None,
        fail_open: bool = False,
        realm: str = "kapi",
        max_header_size: int = 8192,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.blacklist = blacklist
        if blacklist is not None and (
            blacklist.leeway < verifier.leeway or blacklist.max_lifetime < verifier.max_lifetime
        ):
            raise ValueError(
                "the blacklist's leeway and max_lifetime must be at least the verifier's, "
                "or a revocation could end while the token is still accepted"
            )
        self.resolver = resolver or EndpointResolver(routes, patterns=patterns)
        if not callable(public):
            self.resolver.check("public", public)
        self.resolver.check("ignore_token", ignore_token)
        self._ignored = EndpointSet(ignore_token)
        self._is_public = public if callable(public) else self._endpoint_check(EndpointSet(public))
        self.fail_open = fail_open
        self.realm = _quote(realm)
        self.max_header_size = max_header_size
        self.on_reject = on_reject

    def _endpoint_check(self, endpoints: EndpointSet) -> Callable[[Scope], bool]:
        routed = self.resolver.routed

        def is_public(scope: Scope) -> bool:
            return self.resolver.resolve(scope) in endpoints or (routed and not self.resolver.is_known(scope))

        return is_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_preflight(scope):
            await self.app(scope, receive, send)
            return
        try:
            claims = self.authenticate(scope)
            if claims is not None:
                await self.check_revocation(claims)
        except AuthFailure as failure:
            if self.on_reject is not None:
                self.on_reject(failure.reason)
            await failure.response(scope, receive, send)
            return
        self.set_user(scope, claims)
        await self.app(scope, receive, send)

    def authenticate(self, scope: Scope) -> Claims | None:
        """The verified claims, None for an anonymous caller on a public route, or ``AuthFailure``.
        Local work only (no Redis), so a composed gateway can batch the revocation check."""
        if (self._ignored.exact or self._ignored.any_method) and self.resolver.resolve(scope) in self._ignored:
            return None
        token = self.bearer_token(scope)
        if token is None:
            if self._is_public(scope):
                return None
            raise AuthFailure(self.challenge(None, "A bearer token is required."), "missing")
        try:
            return self.verifier.verify(token)
        except InvalidToken as exc:
            raise AuthFailure(self.challenge(exc.description, exc.description), exc.reason) from None

    def bearer_token(self, scope: Scope) -> str | None:
        try:
            return bearer_token(scope, max_header_size=self.max_header_size)
        except InvalidToken as exc:
            raise self._invalid(exc.description, exc.reason) from None

    async def check_revocation(self, claims: Claims) -> None:
        if self.blacklist is None:
            return
        try:
            verdict = await self.blacklist.verdict(claims)
        except RedisUnavailable as exc:
            self.redis_unavailable(exc)
            return
        self.apply_verdict(verdict)

    def redis_unavailable(self, exc: Exception) -> None:
        """Fail closed (503) unless configured to let signature-valid tokens through unchecked."""
        if self.fail_open:
            logger.warning("revocation check skipped, Redis unavailable (%s); failing open", exc)
            return
        response = ProblemResponse(
            503,
            "The token cannot be checked for revocation right now; try again shortly.",
            headers={"Retry-After": "2"},
        )
        raise AuthFailure(response, "redis_unavailable")

    def apply_verdict(self, verdict: Verdict) -> None:
        if verdict is not Verdict.VALID:
            raise self._invalid(verdict.description, verdict.name.lower())

    @staticmethod
    def set_user(scope: Scope, claims: Claims | None) -> None:
        if claims is None:
            scope["user"], scope["auth"] = Anonymous(), AuthCredentials()
        else:
            scope["user"], scope["auth"] = TokenUser(claims), credentials_for(claims)

    def challenge(self, error_description: str | None, detail: str) -> ProblemResponse:
        return challenge(error_description, detail, realm=self.realm)

    def _invalid(self, description: str, reason: str) -> AuthFailure:
        return AuthFailure(self.challenge(description, description), reason)
