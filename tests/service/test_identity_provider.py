"""The service in front of a team's identity provider (JWKS, three settings), and our own key
rotation as docs/how-to/rotate-secret.md does it, end to end against real servers."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer
from service.app import create_app
from tests.conftest import bearer, login, make_settings, serve
from tests.jwks_server import AUDIENCE, ISSUER, IdentityProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider("RS256") as provider:
        yield provider


def idp_settings(redis_server: RedisServer, tmp_path: Path, idp: IdentityProvider, **more: Any) -> Any:
    return make_settings(redis_server.url, tmp_path, jwt_jwks_url=idp.url, jwt_issuer=ISSUER,
                         jwt_audience=AUDIENCE, **more)  # fmt: skip


async def test_keycloak_style_tokens_pass_the_gateway_and_log_out_here(
    redis_server: RedisServer, redis: Redis, tmp_path: Path, idp: IdentityProvider
) -> None:
    settings = idp_settings(redis_server, tmp_path, idp, rate_limit_tier_claim="realm_access.roles")
    async with serve(create_app(settings)) as client:
        token = idp.token("kc-7")
        listed = await client.get("/listings", headers=bearer({"access_token": token}))
        assert listed.status_code == 200 and listed.headers["ratelimit-limit"] == "1000"
        created = await client.post("/listings", json={"title": "Masa", "price": "5", "city": "Ankara"},
                                    headers=bearer({"access_token": token}))  # fmt: skip
        assert created.status_code == 201 and created.json()["owner_id"] == "kc-7"
        pro = idp.token("kc-8", realm_access={"roles": ["offline_access", "pro"]})
        tiered = await client.get("/listings", headers=bearer({"access_token": pro}))
        assert tiered.headers["ratelimit-limit"] == "1000"
        assert (await client.post("/auth/logout", headers=bearer({"access_token": token}))).status_code == 204
        assert (await client.get("/listings", headers=bearer({"access_token": token}))).status_code == 401
        ours = await login(client)  # the service's own sign-in still works beside the provider
        assert (await client.get("/auth/session", headers=bearer(ours))).status_code == 200
    keys = sorted([k.decode() async for k in redis.scan_iter("rate_limit:*")])
    assert "rate_limit:kc-7:GET /listings" in keys and "rate_limit:kc-8:GET /listings" in keys


async def test_tiers_come_from_a_configured_claim(
    redis_server: RedisServer, redis: Redis, tmp_path: Path, idp: IdentityProvider
) -> None:
    claim = "realm_access.roles"
    settings = idp_settings(redis_server, tmp_path, idp, rate_limit="5/hour", rate_limit_tier_claim=claim)
    async with serve(create_app(settings)) as client:
        plain = await client.get("/listings", headers=bearer({"access_token": idp.token("kc-1")}))
        pro = idp.token("kc-2", realm_access={"roles": ["offline_access", "pro"]})
        tiered = await client.get("/listings", headers=bearer({"access_token": pro}))
    assert plain.headers["ratelimit-limit"] == "5" and tiered.headers["ratelimit-limit"] == "1000"


async def test_the_readme_rotation_procedure(redis_server: RedisServer, redis: Redis, tmp_path: Path) -> None:
    key_a, key_b = "rotate-a-" + "a" * 40, "rotate-b-" + "b" * 40
    step_1 = make_settings(redis_server.url, tmp_path, jwt_secret=key_a)
    async with serve(create_app(step_1)) as client:
        tokens_a = await login(client)
    step_2 = make_settings(redis_server.url, tmp_path, jwt_secret=key_b, jwt_previous_secrets=key_a)
    async with serve(create_app(step_2)) as client:
        assert (await client.get("/auth/session", headers=bearer(tokens_a))).status_code == 200  # A's tokens work
        refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens_a["refresh_token"]})
        assert refreshed.status_code == 200  # and A's refresh tokens give B's
        tokens_b = refreshed.json()
    step_3 = make_settings(redis_server.url, tmp_path, jwt_secret=key_b)  # A removed once its tokens expired
    async with serve(create_app(step_3)) as client:
        refused = await client.get("/auth/session", headers=bearer(tokens_a))
        assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert (await client.get("/auth/session", headers=bearer(tokens_b))).status_code == 200


#: The order of P-256, for the second valid form of an ECDSA signature.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def malleated(token: str) -> str:
    """The same ES256 token under its other valid signature, (r, n - s): canonical, and it verifies."""
    signed, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    s = int.from_bytes(raw[32:], "big")
    return f"{signed}.{b64(raw[:32] + (P256_ORDER - s).to_bytes(32, 'big'))}"


def unused_bits_set(token: str) -> str:
    unused = {2: 0b1111, 3: 0b11}[len(token.rpartition(".")[2]) % 4]
    return token[:-1] + ALPHABET[ALPHABET.index(token[-1]) | unused]


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_a_revoked_provider_token_stays_revoked_under_every_spelling(
    redis_server: RedisServer, tmp_path: Path, algorithm: str
) -> None:
    """A provider token without ``jti`` is revoked by what it says; no other spelling of it (padding,
    unused bits, ECDSA's second signature) is a token that was not revoked."""
    with IdentityProvider(algorithm) as provider:
        settings = idp_settings(redis_server, tmp_path, provider, jwt_jwks_algorithm=algorithm)
        async with serve(create_app(settings)) as client:
            token = provider.token("kc-9", jti=None)
            spellings = [token + "=", token + "==", unused_bits_set(token)]
            for spelling in spellings:  # before the logout too: refused as malformed, never a second token
                refused = await client.get("/auth/session", headers=bearer({"access_token": spelling}))
                assert refused.status_code == 401 and "canonical" in refused.headers["www-authenticate"]
            assert (await client.get("/listings", headers=bearer({"access_token": token}))).status_code == 200
            if algorithm == "ES256":
                other = malleated(token)
                assert (await client.get("/listings", headers=bearer({"access_token": other}))).status_code == 200
                spellings.append(other)
            assert (await client.post("/auth/logout", headers=bearer({"access_token": token}))).status_code == 204
            for spelling in [token, *spellings]:
                after = await client.get("/listings", headers=bearer({"access_token": spelling}))
                assert after.status_code == 401, spelling
