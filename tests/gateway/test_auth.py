"""AuthMiddleware with a real Redis blacklist, on a tiny Starlette app built here."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jws, jwt
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import AuthMiddleware, AuthRules, CircuitBreaker, SessionStore, TokenBlacklist, TokenIssuer, TokenVerifier
from gateway.testing import RedisServer
from tests.gateway.conftest import redis_client

pytestmark = pytest.mark.anyio

SECRET = "a-test-secret-of-a-decent-length-0123456789"


@requires("authenticated")
async def private(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.user.identity, "scopes": request.auth.scopes})


async def public(request: Request) -> JSONResponse:
    return JSONResponse({"authenticated": request.user.is_authenticated})


def build(redis: Any, *, verifier: TokenVerifier | None = None, fail_open: bool = False, sessions: bool = True) -> Any:
    routes = [Route("/private", private), Route("/public", public), Route("/items/{item_id}", private)]
    app = Starlette(routes=routes)
    return AuthMiddleware(
        app,
        verifier=verifier or TokenVerifier(key=SECRET),
        blacklist=TokenBlacklist(
            redis, sessions=SessionStore(redis) if sessions else None, breaker=CircuitBreaker(failure_threshold=1)
        ),
        rules=AuthRules(public=["GET /public"], fail_open=fail_open),
        routes=routes,
    )


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.fixture(autouse=True)
async def long_running_redis(redis: Redis) -> None:
    """Tests mint tokens at will: let the Redis look like it has kept its data for a while, so the
    epoch (see test_epoch_*) never falls between a token's iat and its first check."""
    await redis.set("epoch", 0)


@pytest.fixture
async def http(redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(build(redis, sessions=False)) as client:
        yield client


def base_claims() -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "42", "jti": f"jti-{time.monotonic_ns()}", "iat": now, "exp": now + 600, "type": "access"}


def token(
    claims: dict[str, Any] | None = None, *, drop: tuple[str, ...] = (), key: str = SECRET, alg: str = "HS256"
) -> str:
    now = int(time.time())
    base = {"sub": "42", "jti": f"jti-{time.monotonic_ns()}", "iat": now, "exp": now + 600, "type": "access"}
    base.update(claims or {})
    for name in drop:
        base.pop(name)
    return str(jwt.encode(base, key, algorithm=alg))


def unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private.decode(), public_pem.decode()


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="kapi", error="invalid_token", error_description="')


async def test_a_valid_token_reaches_the_handler_and_requires_works(http: httpx.AsyncClient) -> None:
    response = await http.get("/private", headers={"Authorization": f"Bearer {token({'scope': 'listings:write'})}"})
    assert response.status_code == 200
    assert response.json() == {"user": "42", "scopes": ["authenticated", "listings:write"]}


async def test_missing_token_on_a_protected_route_has_no_error_code(http: httpx.AsyncClient) -> None:
    response = await http.get("/private")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="kapi"'
    assert response.json()["status"] == 401


async def test_public_route_token_optional_but_a_bad_one_is_rejected(http: httpx.AsyncClient) -> None:
    assert (await http.get("/public")).json() == {"authenticated": False}
    assert (await http.get("/public", headers={"Authorization": f"Bearer {token()}"})).json() == {"authenticated": True}
    assert_invalid_token(await http.get("/public", headers={"Authorization": "Bearer garbage"}))


async def test_unknown_paths_reach_the_app_for_its_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/nowhere")).status_code == 404
    assert (await http.delete("/public")).status_code == 405


def _now() -> int:
    return int(time.time())


REJECTED = {
    "garbage": lambda: "Bearer not-a-jwt",
    "three garbage parts": lambda: "Bearer a.b.c",
    "bad signature": lambda: f"Bearer {token(key='another-secret-of-some-length-000000000')}",
    "tampered payload": lambda: "Bearer " + token().rsplit(".", 1)[0] + "." + token({"sub": "admin"}).rsplit(".", 1)[1],
    "alg none": lambda: (
        f"Bearer {unsigned({'sub': '42', 'jti': 'x', 'iat': _now(), 'exp': _now() + 60, 'type': 'access'})}"
    ),
    "other HMAC algorithm": lambda: f"Bearer {token(alg='HS512')}",
    "expired": lambda: f"Bearer {token({'iat': _now() - 7200, 'exp': _now() - 3600})}",
    "not yet valid (nbf)": lambda: f"Bearer {token({'nbf': _now() + 3600})}",
    "issued in the future": lambda: f"Bearer {token({'iat': _now() + 3600, 'exp': _now() + 7200})}",
    "no jti": lambda: f"Bearer {token(drop=('jti',))}",
    "no sub": lambda: f"Bearer {token(drop=('sub',))}",
    "no exp": lambda: f"Bearer {token(drop=('exp',))}",
    "no type": lambda: f"Bearer {token(drop=('type',))}",
    "refresh token as access": lambda: f"Bearer {token({'type': 'refresh'})}",
    "numeric sub": lambda: f"Bearer {token({'sub': 42})}",
    "basic scheme": lambda: "Basic dXNlcjpwYXNz",
    "empty bearer": lambda: "Bearer ",
    "two tokens": lambda: f"Bearer {token()} {token()}",
    "header over 8 KiB": lambda: "Bearer " + token({"pad": "x" * 9000}),
    "10 KB token": lambda: "Bearer " + "A" * 10_000,
    "non-ASCII": lambda: "Bearer çığ.öşü.İ",
    # Other spellings of a valid token (RFC 7515: base64url, no padding, unused bits zero).
    "padded": lambda: f"Bearer {token()}=",
    "padded twice": lambda: f"Bearer {token()}==",
    "padding inside the claims": lambda: "Bearer " + padded_claims(),
    "unused bits set": lambda: f"Bearer {respelled(token())}",
    "standard base64 alphabet": lambda: (
        "Bearer " + next(t for t in iter(token, "") if t != t.translate(STANDARD)).translate(STANDARD)
    ),
    "five segments (JWE)": lambda: f"Bearer {token()}.AAAA.BBBB",
    "kid not a string": lambda: (
        "Bearer " + str(jwt.encode(base_claims(), SECRET, algorithm="HS256", headers={"kid": ["x"]}))
    ),
    "exp not finite": lambda: f"Bearer {token({'exp': float('inf')})}",
    "iat NaN": lambda: f"Bearer {token({'iat': float('nan')})}",
}


STANDARD = str.maketrans("-_", "+/")


def padded_claims() -> str:
    """A valid token whose claims segment is spelled with its ``=`` padding."""
    for size in range(4):
        header, claims, signature = token({"pad": "x" * size}).split(".")
        if len(claims) % 4:
            return f"{header}.{claims}{'=' * (-len(claims) % 4)}.{signature}"
    raise AssertionError("unreachable: one of four sizes needs padding")


def respelled(value: str) -> str:
    """``value`` with its signature's last character's unused low bits set: decodes to the same bytes."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 0b1111, 3: 0b11}[len(value.rpartition(".")[2]) % 4]
    return value[:-1] + alphabet[alphabet.index(value[-1]) | unused]


@pytest.mark.parametrize("case", sorted(REJECTED))
async def test_rejects(http: httpx.AsyncClient, case: str) -> None:
    header = REJECTED[case]()
    response = await http.get("/private", headers={"Authorization": header.encode("utf-8")})
    assert_invalid_token(response)


async def test_several_authorization_headers_are_rejected(http: httpx.AsyncClient) -> None:
    headers = [("Authorization", f"Bearer {token()}"), ("Authorization", f"Bearer {token()}")]
    assert_invalid_token(await http.get("/private", headers=headers))


async def test_rs256_accepts_its_tokens_and_refuses_hs256_signed_with_the_public_key(redis: Redis) -> None:
    private_pem, public_pem = rsa_pair()
    app = build(redis, verifier=TokenVerifier(key=public_pem, algorithm="RS256"), sessions=False)
    async with client_for(app) as client:
        good = await client.get("/private", headers={"Authorization": f"Bearer {token(key=private_pem, alg='RS256')}"})
        assert good.status_code == 200
        # Algorithm confusion: an attacker signs HS256 with the (public) RSA key as the HMAC secret.
        forged = jwt.encode(
            {"sub": "1", "jti": "j", "iat": _now(), "exp": _now() + 60, "type": "access"}, "unused", algorithm="HS256"
        )
        header, payload, _ = forged.split(".")
        import hashlib
        import hmac

        signature = hmac.new(public_pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
        confused = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
        assert_invalid_token(await client.get("/private", headers={"Authorization": f"Bearer {confused}"}))


async def test_es256_with_a_pem_key(redis: Redis) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    issuer = TokenIssuer(key=private_pem, algorithm="ES256")
    app = build(redis, verifier=TokenVerifier(key=private_pem, algorithm="ES256"), sessions=False)
    async with client_for(app) as client:
        access = issuer.issue_pair("7", session_id="s").access_token
        assert (await client.get("/private", headers={"Authorization": f"Bearer {access}"})).json()["user"] == "7"


async def test_issuer_and_audience_are_checked_when_configured(redis: Redis) -> None:
    verifier = TokenVerifier(key=SECRET, issuer="kapi", audience="listings")
    async with client_for(build(redis, verifier=verifier, sessions=False)) as client:
        ok = token({"iss": "kapi", "aud": "listings"})
        assert (await client.get("/private", headers={"Authorization": f"Bearer {ok}"})).status_code == 200
        for claims in ({"iss": "evil", "aud": "listings"}, {"iss": "kapi", "aud": "other"}, {"aud": "listings"}):
            response = await client.get("/private", headers={"Authorization": f"Bearer {token(claims)}"})
            assert_invalid_token(response)


async def test_leeway_accepts_a_token_just_expired(redis: Redis) -> None:
    async with client_for(build(redis, verifier=TokenVerifier(key=SECRET, leeway=30), sessions=False)) as client:
        recent = token({"iat": _now() - 100, "exp": _now() - 10})
        assert (await client.get("/private", headers={"Authorization": f"Bearer {recent}"})).status_code == 200


async def test_a_revoked_token_is_refused_next_request_by_every_instance(redis: Redis) -> None:
    blacklist = TokenBlacklist(redis)
    value = token()
    claims = TokenVerifier(key=SECRET).verify(value)
    headers = {"Authorization": f"Bearer {value}"}
    async with client_for(build(redis, sessions=False)) as first, client_for(build(redis, sessions=False)) as second:
        assert (await first.get("/private", headers=headers)).status_code == 200
        assert (await second.get("/private", headers=headers)).status_code == 200

        ttl = await blacklist.revoke(claims)

        for client in (first, second):
            response = await client.get("/private", headers=headers)
            assert_invalid_token(response)
            assert "revoked" in response.headers["www-authenticate"]
    # The entry outlives every moment a verifier accepts the token: its exp plus the 30 s leeway.
    assert 628 <= ttl <= 630
    assert 628 <= await redis.ttl(f"blacklist:42:{claims['jti']}") <= 630
    assert value.encode() not in b"".join([key async for key in redis.scan_iter()])  # never the raw token


async def test_a_revoked_token_stays_refused_through_the_leeway_after_it_expires(redis: Redis) -> None:
    blacklist, verifier = TokenBlacklist(redis, leeway=30), TokenVerifier(key=SECRET, leeway=30)
    expiring = token({"exp": _now() + 2})
    assert 31 <= await blacklist.revoke(verifier.verify(expiring)) <= 32  # the entry outlives exp by the leeway
    expired = token({"iat": _now() - 100, "exp": _now() - 2})  # past exp, inside the leeway: the signature passes
    assert 27 <= await blacklist.revoke(verifier.verify(expired)) <= 28
    async with client_for(build(redis, sessions=False)) as client:
        response = await client.get("/private", headers={"Authorization": f"Bearer {expired}"})
        assert_invalid_token(response)
        assert "revoked" in response.headers["www-authenticate"]


async def test_a_token_that_could_outlive_its_revocation_is_refused(redis: Redis) -> None:
    verifier = TokenVerifier(key=SECRET, max_lifetime=86400)
    async with client_for(build(redis, verifier=verifier, sessions=False)) as client:
        long_lived = token({"exp": _now() + 2 * 86400})
        response = await client.get("/private", headers={"Authorization": f"Bearer {long_lived}"})
        assert_invalid_token(response)
        assert "longer than" in response.json()["detail"]
    # Inside the cap, a revocation is kept to exp + leeway, and never past max_lifetime + leeway.
    claims = verifier.verify(token({"iat": _now(), "exp": _now() + 86400}))
    assert 86428 <= await TokenBlacklist(redis, max_lifetime=86400, leeway=30).revoke(claims) <= 86430
    assert 86428 <= await redis.ttl(f"blacklist:42:{claims['jti']}") <= 86430


async def test_a_blacklist_that_forgets_sooner_than_the_verifier_accepts_is_a_start_up_error(redis: Redis) -> None:
    with pytest.raises(ValueError, match="leeway and max_lifetime"):
        AuthMiddleware(
            public, verifier=TokenVerifier(key=SECRET, leeway=60), blacklist=TokenBlacklist(redis, leeway=30)
        )
    with pytest.raises(ValueError, match="leeway and max_lifetime"):
        AuthMiddleware(
            public,
            verifier=TokenVerifier(key=SECRET, max_lifetime=90 * 86400),
            blacklist=TokenBlacklist(redis, max_lifetime=30 * 86400),
        )


async def test_revoke_all_refuses_every_earlier_token_with_one_key(redis: Redis) -> None:
    blacklist = TokenBlacklist(redis)
    earlier = [token() for _ in range(3)]
    other_user = token({"sub": "43"})
    async with client_for(build(redis, sessions=False)) as client:
        await blacklist.revoke_all("42")
        for value in earlier:
            assert_invalid_token(await client.get("/private", headers={"Authorization": f"Bearer {value}"}))
        assert (await client.get("/private", headers={"Authorization": f"Bearer {other_user}"})).status_code == 200
    assert [key async for key in redis.scan_iter("logout_all:*")] == [b"logout_all:42"]


async def test_revoke_all_covers_tokens_issued_ahead_within_the_leeway(redis: Redis) -> None:
    """An issuer whose clock runs ahead mints iat = now + 25 s; the verifier accepts it (leeway 30 s),
    so logging out everywhere must refuse it too, and keep refusing it until it can no longer pass."""
    ahead = token({"iat": _now() + 25, "exp": _now() + 600})
    blacklist = TokenBlacklist(redis)
    async with client_for(build(redis, sessions=False)) as client:
        assert (await client.get("/private", headers={"Authorization": f"Bearer {ahead}"})).status_code == 200
        await blacklist.revoke_all("42")
        assert_invalid_token(await client.get("/private", headers={"Authorization": f"Bearer {ahead}"}))
    assert await redis.ttl("logout_all:42") >= blacklist.max_ttl + blacklist.leeway - 1


async def test_session_tokens_die_with_their_session(redis: Redis) -> None:
    sessions = SessionStore(redis)
    issuer = TokenIssuer(key=SECRET)
    pair_a = issuer.issue_pair("42", session_id="sa")
    pair_b = issuer.issue_pair("42", session_id="sb")
    for pair, sid in ((pair_a, "sa"), (pair_b, "sb")):
        await sessions.open("42", sid, refresh_jti=pair.refresh["jti"], ip="127.0.0.1", user_agent="t")
    async with client_for(build(redis)) as client:
        assert (
            await client.get("/private", headers={"Authorization": f"Bearer {pair_a.access_token}"})
        ).status_code == 200
        await sessions.end("42", "sa")
        assert_invalid_token(await client.get("/private", headers={"Authorization": f"Bearer {pair_a.access_token}"}))
        assert (
            await client.get("/private", headers={"Authorization": f"Bearer {pair_b.access_token}"})
        ).status_code == 200


async def test_fails_closed_with_503_when_redis_is_down(own_redis_server: RedisServer) -> None:
    redis = Redis.from_url(own_redis_server.url, socket_timeout=0.1, socket_connect_timeout=0.1)
    await TokenBlacklist(redis).ensure_epoch()
    own_redis_server.kill()
    headers = {"Authorization": f"Bearer {token()}"}
    async with (
        client_for(build(redis, sessions=False)) as closed,
        client_for(build(redis, sessions=False, fail_open=True)) as opened,
    ):
        refused = await closed.get("/private", headers=headers)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await closed.get("/public")).status_code == 200  # no token, nothing to check
        assert (await opened.get("/private", headers=headers)).status_code == 200
    await redis.aclose()


async def test_epoch_refuses_tokens_issued_before_redis_lost_its_data(own_redis_server: RedisServer) -> None:
    redis = redis_client(own_redis_server.url)
    await redis.set("epoch", _now() - 1000)
    before = token({"iat": _now() - 5})
    headers = {"Authorization": f"Bearer {before}"}
    async with client_for(build(redis, sessions=False)) as client:
        assert (await client.get("/private", headers=headers)).status_code == 200
        own_redis_server.restart(empty=True)  # every blacklist entry and logout mark is gone
        await asyncio.sleep(0.05)  # let the loop see the old connections close (as it would while Redis restarts)
        assert_invalid_token(await client.get("/private", headers=headers))
        assert await redis.get("epoch") is not None  # a new epoch was recorded
        assert (await client.get("/private", headers={"Authorization": f"Bearer {token()}"})).status_code == 200
    await redis.aclose()


async def test_lifespan_passes_through_and_a_websocket_is_gated_like_a_request() -> None:
    """A server without the denial-response extension gets a close before accept (1008)."""
    seen, sent = [], []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def send(message: Any) -> None:
        sent.append(message)

    app = AuthMiddleware(inner, verifier=TokenVerifier(key=SECRET))
    await app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await app({"type": "websocket", "path": "/ws", "headers": [], "subprotocols": []}, None, send)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "A bearer token is required."}]


class CountingServer:
    """A real HTTP server on 127.0.0.1 counting every request: a jku/x5u a verifier must never fetch."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'{"keys": []}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def with_header(extra: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
    now = _now()
    body = {"sub": "42", "jti": f"j{time.monotonic_ns()}", "iat": now, "exp": now + 600, "type": "access"}
    return str(jwt.encode({**body, **(claims or {})}, SECRET, algorithm="HS256", headers=extra))


async def test_a_token_with_crit_is_refused(http: httpx.AsyncClient) -> None:
    for crit in (["exp"], ["urn:example:must-understand"], []):
        response = await http.get("/private", headers={"Authorization": f"Bearer {with_header({'crit': crit})}"})
        assert_invalid_token(response)
        assert "crit" in response.json()["detail"]


async def test_jku_x5u_and_kid_are_never_followed(http: httpx.AsyncClient) -> None:
    server = CountingServer()
    try:
        header = {"jku": f"{server.url}/jwks.json", "x5u": f"{server.url}/cert.pem"}
        signed = await http.get("/private", headers={"Authorization": f"Bearer {with_header(header)}"})
        assert signed.status_code == 200  # verified with the configured key, jku/x5u ignored
        unknown = await http.get("/private", headers={"Authorization": f"Bearer {with_header({**header, 'kid': 'x'})}"})
        assert_invalid_token(unknown)  # a kid names a key: one this server does not hold is refused
        forged = with_header(header).rsplit(".", 1)[0] + ".AAAA"
        assert_invalid_token(await http.get("/private", headers={"Authorization": f"Bearer {forged}"}))
        assert server.hits == 0
    finally:
        server.close()


async def test_claims_handed_to_the_app_are_not_shared_between_requests(redis: Redis) -> None:
    seen: list[Any] = []

    async def meddle(request: Request) -> JSONResponse:
        claims = request.user.claims
        seen.append((claims.get("role"), claims["roles"]))
        claims["role"] = "admin"  # a handler that "enriches" its claims
        with pytest.raises((TypeError, AttributeError)):
            claims["roles"].append("admin")  # nested values are read-only
        return JSONResponse({})

    routes = [Route("/meddle", meddle)]
    app = AuthMiddleware(Starlette(routes=routes), verifier=TokenVerifier(key=SECRET), routes=routes)
    value = token({"roles": ["reader"]})
    async with client_for(app) as client:
        for _ in range(3):  # the verified-token cache hands out the same token's claims each time
            assert (await client.get("/meddle", headers={"Authorization": f"Bearer {value}"})).status_code == 200
    assert seen == [(None, ("reader",))] * 3


async def test_endpoint_names_must_match_a_route(redis: Redis) -> None:
    routes = [Route("/private", private), Route("/public", public)]
    with pytest.raises(ValueError, match="'GET /pubilc' matches no route"):
        AuthMiddleware(
            Starlette(routes=routes), verifier=TokenVerifier(key=SECRET), routes=routes,
            rules=AuthRules(public=["GET /pubilc"]),
        )  # fmt: skip
    with pytest.raises(ValueError, match="POST /public"):
        AuthMiddleware(
            Starlette(routes=routes), verifier=TokenVerifier(key=SECRET), routes=routes,
            rules=AuthRules(public=["POST /public"]),
        )  # fmt: skip
    with pytest.raises(TypeError, match="not one string"):
        AuthRules(public="GET /public")


async def test_head_is_the_get_endpoint_and_cors_preflights_pass_untouched(http: httpx.AsyncClient) -> None:
    head = await http.head("/public")  # public as "GET /public": HEAD shares its rule
    assert head.status_code == 200 and head.content == b""
    assert (await http.head("/private")).status_code == 401
    preflight = await http.options(
        "/private", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 405  # reached the app (no CORS layer here), not refused with a 401


def described(response: httpx.Response) -> str:
    assert_invalid_token(response)
    challenge = response.headers["www-authenticate"]
    return challenge.split('error_description="', 1)[1].rstrip('"')


CAUSES = {
    "no exp": (lambda: token(drop=("exp",)), "The token has no exp claim."),
    "no iat": (lambda: token(drop=("iat",)), "The token has no iat claim."),
    "no jti": (lambda: token(drop=("jti",)), "The token has no jti claim."),
    "no jti, no exp": (lambda: token(drop=("jti", "exp")), "The token has no jti, exp claims."),
    "no type": (lambda: token(drop=("type",)), "The token has no type claim."),
    "long sub": (lambda: token({"sub": "s" * 300}), "The token's sub claim is longer than 256 characters."),
    "empty sub": (lambda: token({"sub": ""}), "The token's sub claim is empty."),
    "numeric sub": (lambda: token({"sub": 42}), "The token's sub claim must be a string."),
    "exp a string": (lambda: token({"exp": "soon"}), "The token's exp claim must be a number (seconds since 1970)."),
    "exp true": (lambda: token({"exp": True}), "The token's exp claim must be a number (seconds since 1970)."),
    "bad signature": (
        lambda: token(key="another-secret-of-some-length-000000000"),
        "The token's signature does not verify.",
    ),
    "claims not an object": (
        lambda: jws.sign(b"[1]", SECRET, algorithm="HS256"),
        "The token's claims are not a JSON object.",
    ),
    "padded": (lambda: token() + "=", "The token is not in canonical form (base64url without padding, RFC 7515)."),
    "two segments": (lambda: "abc.def", "The token is not a well-formed JWT (three base64url segments)."),
    "not yet valid": (lambda: token({"nbf": _now() + 3600}), "The token is not valid yet (nbf)."),
}


@pytest.mark.parametrize("case", sorted(CAUSES))
async def test_each_refusal_names_its_real_cause(http: httpx.AsyncClient, case: str) -> None:
    make, description = CAUSES[case]
    value = make()
    assert described(await http.get("/private", headers={"Authorization": f"Bearer {value}"})) == description
    assert "s" * 300 not in description  # never echoes the token's content
