"""Tokens from an identity provider, verified by its JWKS (a real local server serving generated
keys), and our own keys rotated by kid, against a real Redis blacklist."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import (
    AuthMiddleware,
    AuthRules,
    InvalidToken,
    JwksKeySet,
    KeySet,
    TokenBlacklist,
    TokenIssuer,
    TokenVerifier,
)
from tests.jwks_server import AUDIENCE, ISSUER, IdentityProvider

pytestmark = pytest.mark.anyio


@requires("authenticated")
async def me(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.identity, "jti": request.user.claims["jti"]})


ROUTES = [Route("/me", me)]


def app_for(verifier: TokenVerifier, redis: Redis) -> Any:
    return AuthMiddleware(
        Starlette(routes=ROUTES), verifier=verifier, blacklist=TokenBlacklist(redis), routes=ROUTES,
        rules=AuthRules(),
    )  # fmt: skip


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(autouse=True)
async def long_running_redis(redis: Redis) -> None:
    await redis.set("epoch", 0)


@pytest.fixture(params=["RS256", "ES256"])
def idp(request: pytest.FixtureRequest) -> Iterator[IdentityProvider]:
    with IdentityProvider(request.param) as provider:
        yield provider


class Clock:
    """A monotonic clock the test moves by hand (the key set's cache age and refetch interval)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier_for(idp: IdentityProvider, **options: Any) -> TokenVerifier:
    jwks = JwksKeySet(idp.url, algorithm=idp.algorithm, **options)
    return TokenVerifier(key="our-own-secret-" + "x" * 30, jwks=jwks, issuer=ISSUER, audience=AUDIENCE)


async def test_identity_provider_tokens_are_access_tokens_and_revocable(idp: IdentityProvider, redis: Redis) -> None:
    verifier = verifier_for(idp)
    async with client(app_for(verifier, redis)) as http:
        token = idp.token("kc-42")
        response = await http.get("/me", headers=bearer(token))
        assert response.status_code == 200 and response.json()["sub"] == "kc-42"  # no `type`: an access token
        assert idp.fetches == 1  # fetched once, on the first token

        without_jti = idp.token("kc-43", jti=None, typ=None)  # Auth0 style: no jti, no typ
        named = (await http.get("/me", headers=bearer(without_jti))).json()["jti"]
        expected = hashlib.sha256(without_jti.rpartition(".")[0].encode()).digest()[:16]  # what was signed
        assert named == "h." + base64.urlsafe_b64encode(expected).rstrip(b"=").decode()  # revocable by a hash

        claims = verifier.verify(without_jti)
        await TokenBlacklist(redis).revoke(claims)
        assert (await http.get("/me", headers=bearer(without_jti))).status_code == 401
        await TokenBlacklist(redis).revoke_all("kc-42")  # log out everywhere: by sub and iat
        assert (await http.get("/me", headers=bearer(token))).status_code == 401
        assert (await http.get("/me", headers=bearer(idp.token("kc-44")))).status_code == 200
        keys = [key.decode() async for key in redis.scan_iter("blacklist:*")]
        assert keys == [f"blacklist:kc-43:{named}"]


@pytest.mark.parametrize("typ", ["Refresh", "ID", "refresh", "id_token"])
async def test_refresh_and_id_tokens_of_an_identity_provider_are_refused(redis: Redis, typ: str) -> None:
    with IdentityProvider("RS256") as idp:
        async with client(app_for(verifier_for(idp), redis)) as http:
            for claims in ({"typ": typ}, {"type": typ}):
                response = await http.get("/me", headers=bearer(idp.token(**claims)))
                assert response.status_code == 401 and "access token" in response.json()["detail"]


async def test_a_rotation_at_the_provider_is_followed_with_one_fetch(redis: Redis) -> None:
    clock = Clock()
    with IdentityProvider("RS256") as idp:
        async with client(app_for(verifier_for(idp, refetch_interval=30, clock=clock), redis)) as http:
            assert (await http.get("/me", headers=bearer(idp.token()))).status_code == 200
            old = idp.current
            new = idp.rotate()
            signed_new = idp.token(key=new)
            assert (await http.get("/me", headers=bearer(signed_new))).status_code == 401
            assert idp.fetches == 1  # inside the refetch interval: refused without a fetch
            clock.now += 30
            results = await asyncio.gather(*(http.get("/me", headers=bearer(signed_new)) for _ in range(20)))
            assert {r.status_code for r in results} == {200}
            assert idp.fetches == 2  # the new kid: one fetch, shared by the 20 concurrent requests
            assert (await http.get("/me", headers=bearer(idp.token(key=old)))).status_code == 200  # still published


async def test_a_flood_of_unknown_kids_is_not_a_flood_of_fetches(redis: Redis) -> None:
    with IdentityProvider("RS256") as idp:
        async with client(app_for(verifier_for(idp, refetch_interval=30), redis)) as http:
            assert (await http.get("/me", headers=bearer(idp.token()))).status_code == 200
            claims = {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "iat": int(time.time()), "exp": int(time.time()) + 60}
            flood = [idp.current.sign(claims, kid=f"random-{i}") for i in range(200)]
            results = await asyncio.gather(*(http.get("/me", headers=bearer(t)) for t in flood))
            assert {r.status_code for r in results} == {401}
            assert idp.fetches <= 2  # the first fetch, and at most one refetch per interval


async def settled(jwks: JwksKeySet) -> None:
    """Wait for the refresh a request started in the background, if it is still running."""
    if jwks._fetching is not None:
        await jwks._fetching


async def test_the_provider_down_keeps_serving_with_cached_keys(redis: Redis) -> None:
    clock = Clock()
    with IdentityProvider("ES256", max_age=60) as idp:
        verifier = verifier_for(idp, min_age=60, refetch_interval=1, stale_for=3600, clock=clock)
        jwks = verifier.jwks
        assert jwks is not None
        async with client(app_for(verifier, redis)) as http:
            assert (await http.get("/me", headers=bearer(idp.token()))).status_code == 200
            assert jwks.fresh_until == clock.now + 60
            idp.down = True
            clock.now += 61  # the cached document is past its max-age
            started = time.monotonic()
            statuses = [(await http.get("/me", headers=bearer(idp.token()))).status_code for _ in range(20)]
            assert statuses == [200] * 20  # the cached keys serve; a background refresh fails quietly
            assert time.monotonic() - started < 2  # and no request waited on the dead endpoint
            await settled(jwks)
            assert idp.fetches == 2  # one refresh, and no other within the refetch interval
            idp.down = False
            clock.now += 1
            await http.get("/me", headers=bearer(idp.token()))
            await settled(jwks)
            assert idp.fetches == 3 and jwks.fresh_until == clock.now + 60  # refreshed again
            idp.down = True  # for good: the cached keys serve for stale_for past their age, not longer
            clock.now += 60 + 3600
            assert (await http.get("/me", headers=bearer(idp.token()))).status_code == 200
            clock.now += 1
            assert (await http.get("/me", headers=bearer(idp.token()))).status_code == 503
            await settled(jwks)


async def test_wrong_issuer_audience_and_algorithm_confusion_are_refused(redis: Redis) -> None:
    with IdentityProvider("RS256") as idp:
        async with client(app_for(verifier_for(idp), redis)) as http:
            for claims in ({"iss": "https://evil.test"}, {"aud": "other-api"}, {"aud": None}):
                assert (await http.get("/me", headers=bearer(idp.token(**claims)))).status_code == 401
            # CVE-2024-33663's class: an HS256 token "signed" with the provider's public key as the secret.
            header = {"alg": "HS256", "typ": "JWT", "kid": idp.current.kid}
            now = int(time.time())
            body = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60}

            def part(data: dict[str, Any]) -> str:
                return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

            signing_input = f"{part(header)}.{part(body)}"
            signature = hmac.new(idp.current.public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
            forged = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
            assert (await http.get("/me", headers=bearer(forged))).status_code == 401
    with pytest.raises(ValueError, match="HMAC"):
        JwksKeySet("https://idp.test/certs", algorithm="HS256")
    with pytest.raises(ValueError, match="https"):
        JwksKeySet("http://idp.test/certs", algorithm="RS256")


async def test_our_own_keys_rotate_without_logging_anyone_out(redis: Redis) -> None:
    key_a, key_b = "key-a-" + "a" * 40, "key-b-" + "b" * 40
    token_a = TokenIssuer(key=key_a).issue_pair("7", session_id="s").access_token
    assert KeySet(key_a).current.kid == KeySet(key_a).current.kid != KeySet(key_b).current.kid  # derived, stable

    before = TokenVerifier(keys=KeySet(key_a))
    rotating = TokenVerifier(keys=KeySet(key_b, previous=[key_a]))
    after = TokenVerifier(keys=KeySet(key_b))
    token_b = TokenIssuer(keys=KeySet(key_b, previous=[key_a])).issue_pair("7", session_id="s").access_token
    async with (
        client(app_for(before, redis)) as one,
        client(app_for(rotating, redis)) as two,
        client(app_for(after, redis)) as three,
    ):
        assert (await one.get("/me", headers=bearer(token_a))).status_code == 200
        assert (await two.get("/me", headers=bearer(token_a))).status_code == 200  # A still verifies
        assert (await two.get("/me", headers=bearer(token_b))).status_code == 200
        refused = await three.get("/me", headers=bearer(token_a))  # A removed: its tokens are refused
        assert refused.status_code == 401 and "key this server does not know" in refused.json()["detail"]
        assert (await three.get("/me", headers=bearer(token_b))).status_code == 200
    kidless = TokenIssuer(key=key_b).claims("8", "access", session_id="s")
    from jose import jwt

    plain = jwt.encode(kidless, key_b, algorithm="HS256")  # minted elsewhere with the shared secret
    async with client(app_for(after, redis)) as http:
        assert (await http.get("/me", headers=bearer(plain))).status_code == 200


@pytest.mark.parametrize("kid", [["a"], {"k": 1}, 7])
async def test_a_kid_that_is_not_a_string_is_refused_not_a_crash(idp: IdentityProvider, kid: Any) -> None:
    """With a JWKS configured, an unhashable ``kid`` once raised TypeError (a 500) before any check."""
    verifier = verifier_for(idp)
    forged = idp.current.sign({"sub": "x", "iat": 1, "exp": 2}, kid=kid)
    with pytest.raises(InvalidToken) as refused:
        await verifier.verify_fetching(forged)
    assert refused.value.reason == "bad_header"
