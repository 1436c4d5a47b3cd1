"""The seed's sign-in flow end to end: OTP, login, sessions, refresh, logout, ownership."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from jose import jwt
from redis.asyncio import Redis
from starlette.applications import Starlette

from gateway.ratelimit import Limit
from gateway.testing import RedisServer
from service.app import create_app
from tests.conftest import CODE_A, CODE_B, PHONE_A, PHONE_B, bearer, login, make_settings, own_task, serve
from tests.monitor import client_commands

pytestmark = pytest.mark.anyio

BIKE = {"title": "Bisiklet", "price": "1250.50", "city": "İstanbul"}


class Outbox:
    """An OTP sender that keeps codes (instead of an SMS gateway)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, phone: str, code: str) -> None:
        self.sent.append((phone, code))


async def test_seed_flow_login_call_logout_then_the_token_is_refused(anon: httpx.AsyncClient) -> None:
    tokens = await login(anon)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 86400
    headers = bearer(tokens)
    assert (await anon.post("/listings", json=BIKE, headers=headers)).status_code == 201

    assert (await anon.post("/auth/logout", headers=headers)).status_code == 204

    refused = await anon.post("/listings", json=BIKE, headers=headers)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert (await anon.get("/listings", headers=headers)).status_code == 401  # public route, revoked token
    assert (await anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401


async def test_logout_blacklists_the_jti_for_its_remaining_lifetime(anon: httpx.AsyncClient, redis: Redis) -> None:
    tokens = await login(anon)
    await anon.post("/auth/logout", headers=bearer(tokens))
    keys = [key async for key in redis.scan_iter("blacklist:*")]
    assert len(keys) == 1 and keys[0].startswith(b"blacklist:1:")
    assert 86428 <= await redis.ttl(keys[0]) <= 86430  # the remaining lifetime plus JWT_LEEWAY
    assert tokens["access_token"].encode() not in keys[0]


async def test_a_second_app_instance_refuses_the_logged_out_token(
    app: Starlette, anon: httpx.AsyncClient, settings: Any
) -> None:
    tokens = await login(anon)
    other = create_app(settings)
    async with serve(other) as second:
        assert (await second.get("/auth/session", headers=bearer(tokens))).status_code == 200
        await anon.post("/auth/logout", headers=bearer(tokens))
        assert (await second.get("/auth/session", headers=bearer(tokens))).status_code == 401


async def test_writes_need_a_token_and_only_the_owner_may_change(anon: httpx.AsyncClient) -> None:
    missing = await anon.post("/listings", json=BIKE)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="kapi"'
    owner, other = bearer(await login(anon)), bearer(await login(anon, PHONE_B, CODE_B))
    listing = (await anon.post("/listings", json=BIKE, headers=owner)).json()
    path = f"/listings/{listing['id']}"

    assert (await anon.patch(path, json={"title": "x"})).status_code == 401
    assert (await anon.patch(path, json={"title": "x"}, headers=other)).status_code == 403
    assert (await anon.delete(path, headers=other)).status_code == 403
    assert (await anon.patch(path, json={"title": "Benim"}, headers=owner)).json()["title"] == "Benim"
    assert (await anon.delete(path, headers=owner)).status_code == 204
    assert (await anon.get(path)).status_code == 404


async def test_otp_code_is_stored_hashed_with_a_five_minute_ttl(redis: Redis, settings: Any) -> None:
    outbox = Outbox()
    async with serve(create_app(settings, otp_sender=outbox)) as client:
        response = await client.post("/auth/otp", json={"phone": "0555 123 45 67"})
        assert response.status_code == 202 and response.json() == {"phone": "+905551234567", "expires_in": 300}
        [(phone, code)] = outbox.sent
        assert phone == "+905551234567" and len(code) == 6
        stored = await redis.hgetall("otp:+905551234567")
        assert code.encode() not in b"".join(stored.values())
        assert 298 <= await redis.ttl("otp:+905551234567") <= 300
        ok = await client.post("/auth/login/phone", json={"phone": "+90 555 123 4567", "code": code})
        assert ok.status_code == 200
        assert await redis.exists("otp:+905551234567") == 0  # a code works once


async def test_test_numbers_send_nothing_and_obey_every_rule(redis: Redis, settings: Any) -> None:
    outbox = Outbox()
    async with serve(create_app(settings, otp_sender=outbox)) as client:
        no_code = await client.post("/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A})
        assert no_code.status_code == 400  # a fixed code still has to be requested first
        await client.post("/auth/otp", json={"phone": PHONE_A})
        assert outbox.sent == []
        await redis.pexpire(f"otp:{PHONE_A}", 1)
        await asyncio.sleep(0.01)
        expired = await client.post("/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A})
        assert expired.status_code == 400 and "request one" in expired.json()["detail"]


async def test_five_wrong_codes_lock_the_code(anon: httpx.AsyncClient) -> None:
    await anon.post("/auth/otp", json={"phone": PHONE_B})
    left = []
    for _ in range(5):
        wrong = await anon.post("/auth/login/phone", json={"phone": PHONE_B, "code": "000000"})
        assert wrong.status_code == 400 and wrong.headers["content-type"] == "application/problem+json"
        left.append(wrong.json()["tries_left"])
    assert left == [4, 3, 2, 1, 0]
    right_but_late = await anon.post("/auth/login/phone", json={"phone": PHONE_B, "code": CODE_B})
    assert right_but_late.status_code == 400
    await anon.post("/auth/otp", json={"phone": PHONE_B})
    assert (await anon.post("/auth/login/phone", json={"phone": PHONE_B, "code": CODE_B})).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/auth/otp", {"phone": "not a phone"}),
        ("/auth/otp", {"phone": "+1"}),
        ("/auth/otp", {}),
        ("/auth/otp", {"phone": PHONE_A, "extra": 1}),
        ("/auth/login/phone", {"phone": PHONE_A, "code": "12345"}),
        ("/auth/login/phone", {"phone": PHONE_A, "code": 123456}),
        ("/auth/login/phone", {"phone": PHONE_A}),
        ("/auth/refresh", {}),
        ("/auth/refresh", {"refresh_token": ""}),
    ],
)
async def test_bad_auth_bodies_are_422(anon: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    response = await anon.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_sessions_are_listed_and_one_is_ended_from_another_device(anon: httpx.AsyncClient, redis: Redis) -> None:
    phone = await login(anon, **{"user-agent": "KapiPhone/1.0"})
    laptop = await login(anon, **{"user-agent": "KapiLaptop/2.0"})

    listed = (await anon.get("/auth/session", headers=bearer(laptop))).json()["sessions"]
    assert [s["user_agent"] for s in listed] == ["KapiPhone/1.0", "KapiLaptop/2.0"]
    assert [s["current"] for s in listed] == [False, True]
    assert all(s["ip"] == "127.0.0.1" and s["created_at"].endswith("Z") for s in listed)
    assert 86458 <= await redis.ttl("session:1") <= 86460  # SESSION_TTL plus one touch interval (60 s)

    phone_session = listed[0]["session_id"]
    assert (await anon.delete(f"/auth/session/{phone_session}", headers=bearer(laptop))).status_code == 204
    assert (await anon.get("/auth/session", headers=bearer(phone))).status_code == 401
    assert (await anon.post("/auth/refresh", json={"refresh_token": phone["refresh_token"]})).status_code == 401
    assert len((await anon.get("/auth/session", headers=bearer(laptop))).json()["sessions"]) == 1
    assert (await anon.delete("/auth/session/nope", headers=bearer(laptop))).status_code == 404


async def test_a_user_cannot_end_another_users_session(anon: httpx.AsyncClient) -> None:
    alice, bob = await login(anon), await login(anon, PHONE_B, CODE_B)
    alice_session = (await anon.get("/auth/session", headers=bearer(alice))).json()["sessions"][0]["session_id"]
    assert (await anon.delete(f"/auth/session/{alice_session}", headers=bearer(bob))).status_code == 404
    assert (await anon.get("/auth/session", headers=bearer(alice))).status_code == 200


async def test_refresh_rotates_and_reuse_ends_the_login(settings: Any, redis: Redis) -> None:
    async with serve(create_app(replace(settings, refresh_reuse_grace=0))) as anon:
        first = await login(anon)
        second = (await anon.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
        assert (await anon.get("/auth/session", headers=bearer(second))).status_code == 200
        assert (await anon.get("/auth/session", headers=bearer(first))).status_code == 200  # same login

        reused = await anon.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reused.status_code == 401 and "already used" in reused.json()["detail"]
        assert 'error="invalid_token"' in reused.headers["www-authenticate"]
        for tokens in (first, second):  # theft assumed: the whole login is over
            assert (await anon.get("/auth/session", headers=bearer(tokens))).status_code == 401
        assert (await anon.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})).status_code == 401


async def test_two_tabs_refreshing_at_once_keep_the_login(anon: httpx.AsyncClient) -> None:
    tokens = await login(anon)
    refreshes = await asyncio.gather(
        *(anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) for _ in range(8))
    )
    assert [r.status_code for r in refreshes] == [200] * 8
    pairs = [r.json() for r in refreshes]
    assert len({p["refresh_token"] for p in pairs}) == 8
    for pair in pairs:  # every pair handed out works: its access token, and its refresh token once
        assert (await anon.get("/auth/session", headers=bearer(pair))).status_code == 200
    for pair in pairs:
        again = await anon.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert again.status_code == 200, again.text
    assert len((await anon.get("/auth/session", headers=bearer(again.json()))).json()["sessions"]) == 1


async def test_reuse_after_the_grace_ends_the_login(settings: Any, redis: Redis) -> None:
    async with serve(create_app(replace(settings, refresh_reuse_grace=1))) as anon:
        first = await login(anon)
        second = (await anon.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        within = await anon.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert within.status_code == 200  # a retry after a lost response: a pair for the same login
        await asyncio.sleep(1.2)
        late = await anon.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert late.status_code == 401 and "already used" in late.json()["detail"]
        for tokens in (second, within.json()):
            assert (await anon.get("/auth/session", headers=bearer(tokens))).status_code == 401


async def test_refresh_works_while_the_client_still_sends_its_expired_access_token(
    anon: httpx.AsyncClient, settings: Any
) -> None:
    tokens = await login(anon)
    stale = jwt.encode(
        {"sub": "1", "jti": "old", "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600,
         "type": "access", "sid": "x"},
        str(settings.jwt_secret), algorithm="HS256",
    )  # fmt: skip
    for header in (f"Bearer {stale}", "Bearer garbage"):
        response = await anon.post(
            "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, headers={"Authorization": header}
        )
        assert response.status_code == 200, response.text
        tokens = response.json()
    bad = await anon.post("/auth/refresh", json={"refresh_token": "not-a-token"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"].startswith('Bearer realm="kapi", error=')


async def test_logout_twice_is_204_and_the_session_ends_with_it(anon: httpx.AsyncClient, redis: Redis) -> None:
    tokens = await login(anon)
    assert (await anon.post("/auth/logout", headers=bearer(tokens))).status_code == 204
    assert (await anon.post("/auth/logout", headers=bearer(tokens))).status_code == 204  # RFC 7009 §2.2
    assert await redis.hlen("session:1") == 0
    assert (await anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    assert (await anon.post("/auth/logout")).status_code == 401
    forged = await anon.post("/auth/logout", headers={"Authorization": "Bearer a.b.c"})
    assert forged.status_code == 401 and 'error="invalid_token"' in forged.headers["www-authenticate"]


async def test_refresh_and_access_tokens_are_not_interchangeable(anon: httpx.AsyncClient) -> None:
    tokens = await login(anon)
    as_access = await anon.get("/auth/session", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert as_access.status_code == 401 and 'error="invalid_token"' in as_access.headers["www-authenticate"]
    as_refresh = await anon.post("/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert as_refresh.status_code == 401


async def test_logout_all_revokes_every_login_of_the_user(anon: httpx.AsyncClient) -> None:
    one, two = await login(anon), await login(anon)
    bob = await login(anon, PHONE_B, CODE_B)
    assert (await anon.post("/auth/logout/all", headers=bearer(one))).status_code == 204
    for tokens in (one, two):
        assert (await anon.get("/auth/session", headers=bearer(tokens))).status_code == 401
        assert (await anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    assert (await anon.get("/auth/session", headers=bearer(bob))).status_code == 200
    again = await login(anon)  # logging in afterwards works at once
    assert (await anon.get("/auth/session", headers=bearer(again))).status_code == 200


async def test_users_are_created_once_per_phone(anon: httpx.AsyncClient) -> None:
    first, second = await login(anon), await login(anon)
    bob = await login(anon, PHONE_B, CODE_B)
    ids = []
    for tokens in (first, second, bob):
        listing = (await anon.post("/listings", json=BIKE, headers=bearer(tokens))).json()
        ids.append(listing["owner_id"])
    assert ids[0] == ids[1] != ids[2]


async def test_auth_fails_closed_when_redis_is_down(own_redis_server: RedisServer, tmp_path: Path) -> None:
    async with serve(create_app(make_settings(own_redis_server.url, tmp_path))) as client:
        tokens = await login(client)
        own_redis_server.kill()
        refused = await client.get("/auth/session", headers=bearer(tokens))
        assert refused.status_code == 503 and "retry-after" in refused.headers
        assert (await client.post("/auth/otp", json={"phone": PHONE_A})).status_code == 503
        assert (await client.get("/listings")).status_code == 200  # anonymous reads still work


async def test_wrong_codes_are_capped_per_phone_per_day_whatever_the_resends(settings: Any, redis: Redis) -> None:
    async with serve(create_app(replace(settings, otp_max_failures=7))) as client:
        wrong = []
        for _ in range(2):  # each resend gives a fresh code with 5 tries; the day's count goes on
            assert (await client.post("/auth/otp", json={"phone": PHONE_B})).status_code == 202
            for _ in range(5):
                wrong.append(await client.post("/auth/login/phone", json={"phone": PHONE_B, "code": "000000"}))
        assert [r.status_code for r in wrong] == [400] * 7 + [429] * 3
        locked = wrong[-1]
        assert locked.headers["content-type"] == "application/problem+json"
        assert 86390 <= int(locked.headers["retry-after"]) <= 86400
        resend = await client.post("/auth/otp", json={"phone": PHONE_B})
        assert resend.status_code == 429  # no new code for a locked number either
        right = await client.post("/auth/login/phone", json={"phone": PHONE_B, "code": CODE_B})
        assert right.status_code == 429  # even the right code
        assert (await client.post("/auth/otp", json={"phone": PHONE_A})).status_code == 202  # others unaffected
    assert 86390 <= await redis.ttl(f"otp_failures:{PHONE_B}") <= 86400


async def test_the_global_send_budget_stops_sms_pumping(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox()
    budget = replace(settings, otp_send_budget=(Limit(3, 3600),))
    async with serve(create_app(budget, otp_sender=outbox)) as client:
        numbers = [f"+90555123450{i}" for i in range(5)]
        statuses = [(await client.post("/auth/otp", json={"phone": n})).status_code for n in numbers]
        assert statuses == [202, 202, 202, 503, 503]
        assert len(outbox.sent) == 3
        refused = await client.post("/auth/otp", json={"phone": "+905551234599"})
        assert refused.headers["content-type"] == "application/problem+json" and "retry-after" in refused.headers
        # Test numbers send nothing, so they spend nothing: app-store reviewers still get in.
        assert (await client.post("/auth/otp", json={"phone": PHONE_A})).status_code == 202
    assert any("ALERT" in r.getMessage() and "OTP_SEND_BUDGET" in r.getMessage() for r in caplog.records)


async def test_test_numbers_in_production_are_a_start_up_warning(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    create_app(replace(settings, env="production", diagnostics=False))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("OTP_TEST_NUMBERS" in w and "3 number(s)" in w for w in warnings)


async def test_logout_is_one_atomic_step_even_when_redis_refuses_writes(
    anon: httpx.AsyncClient, redis: Redis, redis_server: RedisServer
) -> None:
    tokens = await login(anon)
    async with client_commands(redis_server.url) as seen:
        await redis.config_set("maxmemory", 1)  # Redis is full: -OOM for writes (noeviction)
        try:
            outcome = await anon.post("/auth/logout", headers=bearer(tokens))
        finally:
            await redis.config_set("maxmemory", 0)
    # The logout is one script that revokes and ends the login (the gateway's rate-limit step before it
    # may itself be refused with -OOM: its first write grows memory, so Redis refuses it before it runs).
    assert [name for name in seen.names() if name != "CONFIG"] in (["EVALSHA"], ["EVALSHA", "EVALSHA"])
    blacklisted = [key async for key in redis.scan_iter("blacklist:*")] != []
    session_alive = await redis.hlen("session:1") > 0
    # Both done (204) or neither (503, a clean problem): never a revoked token with a live session.
    assert blacklisted is not session_alive
    assert outcome.status_code == (204 if blacklisted else 503)
    assert (await own_task(anon.post("/auth/logout", headers=bearer(tokens)))).status_code == 204
    assert (await own_task(anon.get("/auth/session", headers=bearer(tokens)))).status_code == 401
    refresh = anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert (await own_task(refresh)).status_code == 401


async def test_token_code_and_session_responses_are_never_stored_by_caches(anon: httpx.AsyncClient) -> None:
    """RFC 6749 §5.1: token responses carry ``Cache-Control: no-store``; so does everything else the
    sign-in and session routes answer (codes, phone numbers, session data, their errors)."""
    sent = await anon.post("/auth/otp", json={"phone": PHONE_A})
    wrong = await anon.post("/auth/login/phone", json={"phone": PHONE_A, "code": "000000"})
    signed_in = await anon.post("/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A})
    tokens = signed_in.json()
    refreshed = await anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    listed = await anon.get("/auth/session", headers=bearer(refreshed.json()))
    logged_out = await anon.post("/auth/logout", headers=bearer(refreshed.json()))
    responses = [sent, wrong, signed_in, refreshed, listed, logged_out]
    assert [r.status_code for r in responses] == [202, 400, 200, 200, 200, 204]
    for response in responses:
        assert response.headers["cache-control"] == "no-store", response.request.url
        assert response.headers["pragma"] == "no-cache"
    listing = await anon.get("/listings")  # public data stays cacheable as before
    assert "no-store" not in listing.headers.get("cache-control", "")
