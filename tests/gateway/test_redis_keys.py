"""Key parts from outside (a token's sub/jti/sid, a cache decorator's arguments) cannot forge keys."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from gateway import Keys, TokenBlacklist, cached
from gateway.redis_keys import escape

pytestmark = pytest.mark.anyio


def test_ordinary_ids_read_as_the_seed_writes_them() -> None:
    keys = Keys()
    assert keys.user("session", "42") == "session:42"
    assert keys.user("rate_limit", "42", "GET /listings/{listing_id}") == "rate_limit:42:GET /listings/{listing_id}"
    assert TokenBlacklist(lambda: None).blacklist_key({"sub": "42", "jti": "Qm9vaw"}) == "blacklist:42:Qm9vaw"


def test_a_sub_that_looks_like_another_identity_gets_its_own_keys() -> None:
    keys = Keys()
    anonymous = keys.owned("rate_limit", Keys.client("ip", "127.0.0.1"), "GET /listings")
    forged = keys.user("rate_limit", "ip:127.0.0.1", "GET /listings")
    assert anonymous == "rate_limit:ip:127.0.0.1:GET /listings"
    assert forged == "rate_limit:ip%3A127.0.0.1:GET /listings"
    # A sub cannot reach into the next part either, nor close a hash tag on a cluster.
    assert keys.user("session", "1:x") != keys.user("session", "1", "x")
    assert Keys(cluster=True).user("session", "1}x") == "session:{1%7Dx}"


def test_a_jti_cannot_revoke_another_users_token() -> None:
    key = TokenBlacklist(lambda: None).blacklist_key
    assert key({"sub": "alice", "jti": "same-jti"}) != key({"sub": "bob", "jti": "same-jti"})
    assert key({"sub": "a", "jti": "b:c"}) != key({"sub": "a:b", "jti": "c"})


def test_escape_is_reversible_and_leaves_plain_text_alone() -> None:
    from urllib.parse import unquote

    for value in ("42", "a:b", "%3A", "{x}", "ş:ğ%"):
        assert unquote(escape(value)) == value
        assert not set(escape(value)) & set(":{}")
    assert escape("plain-id_7") == "plain-id_7"


async def test_cached_template_arguments_are_escaped(redis: Redis) -> None:
    calls = []

    @cached("profile:{a}:{b}", redis=redis, ttl=60)
    async def profile(a: str, b: str) -> list[str]:
        calls.append((a, b))
        return [a, b]

    assert profile.key("x:y", "z") != profile.key("x", "y:z")
    assert await profile("x:y", "z") == ["x:y", "z"]
    assert await profile("x", "y:z") == ["x", "y:z"]  # not the other one's cached value
    assert calls == [("x:y", "z"), ("x", "y:z")]
    assert profile.key(7, "tr") == "profile:7:tr"
