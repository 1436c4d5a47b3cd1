"""The identity-provider how-to (docs/examples/identity-providers/app.py) against a local identity
provider that signs tokens as Keycloak does and serves its JWKS (tests/jwks_server.py): its access
tokens pass, a role picks the tier, a token for another audience or a refresh token is refused, a
logout here refuses the token, and a key rotation at the provider is followed."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from gateway import TokenBlacklist
from gateway.testing import RedisServer
from tests.docs.walkthrough import EXAMPLES
from tests.jwks_server import AUDIENCE, ISSUER, IdentityProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def idp() -> AsyncIterator[IdentityProvider]:
    with IdentityProvider("RS256") as provider:
        yield provider


@pytest.fixture
async def http(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, idp: IdentityProvider
) -> AsyncIterator[httpx.AsyncClient]:
    settings = {
        "JWT_SECRET": "our-own-secret-our-own-secret-0123",
        "JWT_JWKS_URL": idp.url,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "REDIS_URL": redis_server.url,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(EXAMPLES / "identity-providers"))
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    redis = Redis.from_url(redis_server.url)
    await redis.flushdb()
    await TokenBlacklist(redis).ensure_epoch()
    await redis.aclose()
    async with module.app.router.lifespan_context(module.app):
        transport = httpx.ASGITransport(app=module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
    sys.modules.pop("app", None)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_providers_tokens_pass_and_roles_pick_the_tier(
    http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    me = await http.get("/me", headers=bearer(idp.token("kc-user-1")))
    assert me.json() == {"user": "kc-user-1", "issuer": ISSUER}
    assert me.headers["ratelimit-policy"] == '"default";q=100;w=3600'
    pro = await http.get("/me", headers=bearer(idp.token("kc-user-2", realm_access={"roles": ["offline", "pro"]})))
    assert pro.headers["ratelimit-policy"] == '"pro";q=1000;w=3600'
    assert idp.fetches == 1  # fetched once, then cached


async def test_tokens_not_meant_for_this_api_are_refused(http: httpx.AsyncClient, idp: IdentityProvider) -> None:
    other = await http.get("/me", headers=bearer(idp.token(aud="another-api")))
    assert other.status_code == 401 and "another audience" in other.headers["www-authenticate"]
    refresh = await http.get("/me", headers=bearer(idp.token(typ="Refresh")))
    assert refresh.status_code == 401 and "Refresh token cannot be used here" in refresh.json()["detail"]


async def test_a_logout_here_refuses_the_providers_token(http: httpx.AsyncClient, idp: IdentityProvider) -> None:
    token = bearer(idp.token("kc-user-3"))
    assert (await http.post("/logout", headers=token)).status_code == 204
    refused = await http.get("/me", headers=token)
    assert refused.status_code == 401 and refused.json()["detail"] == "The token has been revoked."


async def test_a_rotation_at_the_provider_is_followed(http: httpx.AsyncClient, idp: IdentityProvider) -> None:
    assert (await http.get("/me", headers=bearer(idp.token()))).status_code == 200
    new_key = idp.rotate()
    # A kid not seen yet waits for one refetch, but refetches are at most one per 30 s.
    assert (await http.get("/me", headers=bearer(idp.token(key=new_key)))).status_code == 401
    jwks = sys.modules["app"].verifier.jwks
    jwks.clock = lambda: time.monotonic() + 31
    assert (await http.get("/me", headers=bearer(idp.token(key=new_key)))).status_code == 200
    assert idp.fetches == 2  # the unknown kid made it fetch the keys once more
