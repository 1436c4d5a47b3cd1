"""TokenVerifier's memory of verified tokens: a token already seen skips the signature check, and is
still refused at every moment a fresh verification would refuse it. The clock is the verifier's own,
moved by hand; signature checks are counted by wrapping python-jose's ``jwt.decode``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from jose import jwt

from gateway import InvalidToken, JwksKeySet, KeySet, TokenIssuer, TokenVerifier
from gateway import tokens as tokens_module
from gateway.tokens import new_id
from tests.jwks_server import AUDIENCE, ISSUER, IdentityProvider, SigningKey

KEY_A, KEY_B = "key-a-" + "a" * 40, "key-b-" + "b" * 40
NOW = 1_700_000_000.0


class Clock:
    """The verifier's clock (seconds since 1970), moved by the test."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token whose signature python-jose checks, in order."""
    calls: list[str] = []
    decode: Callable[..., Any] = tokens_module.jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(tokens_module.jwt, "decode", counting)
    return calls


def mint(key: str = KEY_A, *, kid: bool = True, **claims: Any) -> str:
    """A token signed with ``key`` (HS256), valid from ``NOW`` for 300 s unless ``claims`` say otherwise."""
    body = {"sub": "7", "jti": new_id(), "iat": int(NOW), "exp": int(NOW) + 300, "type": "access", "sid": "s"}
    body.update(claims)
    if kid:
        return TokenIssuer(key=key).encode(body)
    return str(jwt.encode(body, key, algorithm="HS256"))


def reason(verifier: TokenVerifier, token: str, **options: Any) -> str:
    """What ``verify`` says: ``ok``, or the refusal's reason."""
    try:
        verifier.verify(token, **options)
    except InvalidToken as refused:
        return refused.reason
    return "ok"


def test_a_token_already_seen_skips_the_signature_check(checks: list[str]) -> None:
    token = mint()
    verifier = TokenVerifier(key=KEY_A, clock=Clock())
    first, second = verifier.verify(token), verifier.verify(token)
    assert first == second and first["sub"] == "7"
    assert checks == [token] and verifier.remembered == 1
    first["sub"] = "mallory"  # each call's dict is its own
    assert verifier.verify(token)["sub"] == "7"


@pytest.mark.parametrize("leeway", [0, 30])
def test_a_remembered_token_is_refused_once_past_exp_and_the_leeway(checks: list[str], leeway: int) -> None:
    clock = Clock()
    verifier = TokenVerifier(key=KEY_A, leeway=leeway, clock=clock)
    token = mint(exp=int(NOW) + 300)
    verifier.verify(token)
    clock.now = NOW + 300 + leeway - 0.5
    assert reason(verifier, token) == "ok" and len(checks) == 1  # still remembered, still valid
    clock.now = NOW + 300 + leeway
    assert reason(verifier, token) == "expired"
    assert verifier.remembered == 0  # dropped at its expiry


def test_an_entry_is_dropped_at_its_expiry_even_when_not_asked_for_again() -> None:
    clock = Clock()
    verifier = TokenVerifier(key=KEY_A, leeway=10, clock=clock)
    short, long = mint(exp=int(NOW) + 60), mint(exp=int(NOW) + 600)
    verifier.verify(short)
    verifier.verify(long)
    clock.now = NOW + 70
    verifier.verify(long)
    assert verifier.remembered == 1  # ``short`` went at exp + leeway, though nobody sent it again


@pytest.mark.parametrize(
    "claims",
    [
        {"nbf": int(NOW) + 100},
        {"iat": int(NOW) + 100, "exp": int(NOW) + 400},  # an issuer whose clock runs ahead
        {"nbf": int(NOW) + 50, "iat": int(NOW) + 20, "exp": int(NOW) + 200},
    ],
    ids=["nbf", "iat", "nbf and iat"],
)
def test_at_every_moment_a_remembered_token_gets_the_answer_a_fresh_verification_gives(
    claims: dict[str, int],
) -> None:
    """The clock walks forward and back (an NTP step) across every boundary: nbf, iat and exp, each
    with the leeway; the remembering verifier answers exactly as one that remembers nothing."""
    clock = Clock()
    remembering = TokenVerifier(key=KEY_A, leeway=30, clock=clock)
    fresh = TokenVerifier(key=KEY_A, leeway=30, clock=clock, max_remembered=0)
    token = mint(**claims)
    seen = set()
    for offset in [100, 0, 69, 70, 71, 50, 19, 20, 21, -10, 100, 229.5, 230, 329.5, 330, 429.5, 430]:
        clock.now = NOW + offset
        answer = reason(fresh, token)
        assert reason(remembering, token) == answer, f"at NOW + {offset}"
        seen.add(answer)
    assert {"ok", "not_yet_valid", "expired"} <= seen  # the walk crossed each boundary


def test_a_remembered_token_refused_by_nbf_after_the_clock_steps_back(checks: list[str]) -> None:
    clock = Clock(NOW + 100)
    verifier = TokenVerifier(key=KEY_A, leeway=30, clock=clock)
    token = mint(nbf=int(NOW) + 100)
    verifier.verify(token)
    clock.now = NOW + 69  # nbf is more than the leeway ahead again
    assert reason(verifier, token) == "not_yet_valid"
    clock.now = NOW + 100
    assert reason(verifier, token) == "ok" and checks == [token]  # the entry stays; only the answer changed


@pytest.mark.parametrize("how", ["a new key set", "the kid deleted from the set"])
def test_a_token_whose_key_left_the_set_is_refused(how: str) -> None:
    token = mint(KEY_A)
    verifier = TokenVerifier(keys=KeySet(KEY_B, previous=[KEY_A]), clock=Clock())
    assert reason(verifier, token) == "ok"
    if how == "a new key set":
        verifier.keys = KeySet(KEY_B)  # the previous key retired (or removed after a leak)
    else:
        del verifier.keys.by_kid[KeySet(KEY_A).current.kid]
    assert reason(verifier, token) == "unknown_key"
    assert verifier.remembered == 0


def test_a_kidless_token_is_verified_again_when_the_current_key_changes(checks: list[str]) -> None:
    kidless = mint(KEY_A, kid=False)  # minted elsewhere with the shared secret: verified with the current key
    named = mint(KEY_A)
    verifier = TokenVerifier(keys=KeySet(KEY_A), clock=Clock())
    assert reason(verifier, kidless) == reason(verifier, named) == "ok"
    verifier.keys = KeySet(KEY_B, previous=[KEY_A])  # rotated: B is current
    assert reason(verifier, kidless) == "bad_signature"  # verified afresh against B
    assert reason(verifier, named) == "ok"  # its kid still gives the same key: no new check
    assert checks == [kidless, named, kidless]


def test_a_refused_token_is_not_remembered(checks: list[str]) -> None:
    clock = Clock()
    token = mint(KEY_B)
    verifier = TokenVerifier(keys=KeySet(KEY_A), clock=clock)
    assert reason(verifier, token) == reason(verifier, token) == "unknown_key"
    verifier.keys = KeySet(KEY_A, previous=[KEY_B])  # the key arrives later
    assert reason(verifier, token) == "ok"

    forged = mint(KEY_B, kid=False)  # names no kid: checked against A, and refused, each time
    assert reason(verifier, forged) == reason(verifier, forged) == "bad_signature"
    assert checks.count(forged) == 2 and verifier.remembered == 1

    early = mint(KEY_A, nbf=int(NOW) + 100)
    assert reason(verifier, early) == "not_yet_valid"
    clock.now = NOW + 100
    assert reason(verifier, early) == "ok"


def test_the_memory_is_bounded_least_recently_used_out(checks: list[str]) -> None:
    verifier = TokenVerifier(key=KEY_A, clock=Clock(), max_remembered=2)
    one, two, three = mint(), mint(), mint()
    for token in (one, two, one, three):
        verifier.verify(token)
    assert checks == [one, two, three] and verifier.remembered == 2
    verifier.verify(one)  # used more recently than ``two``: kept
    verifier.verify(two)  # evicted: checked again
    assert checks == [one, two, three, two]
    many = [mint(exp=int(NOW) + 300 + i) for i in range(50)]
    for token in many:
        verifier.verify(token)
        assert verifier.remembered <= 2


def test_max_remembered_zero_turns_the_memory_off(checks: list[str]) -> None:
    token = mint()
    verifier = TokenVerifier(key=KEY_A, clock=Clock(), max_remembered=0)
    verifier.verify(token)
    verifier.verify(token)
    assert checks == [token, token] and verifier.remembered == 0
    with pytest.raises(ValueError, match="max_remembered"):
        TokenVerifier(key=KEY_A, max_remembered=-1)


def test_a_token_remembered_for_one_type_does_not_pass_as_the_other() -> None:
    verifier = TokenVerifier(key=KEY_A, clock=Clock())
    refresh, access = mint(type="refresh"), mint(type="access")
    assert reason(verifier, refresh, expected_type="refresh") == "ok"
    assert reason(verifier, refresh) == "wrong_type"
    assert reason(verifier, access) == "ok"
    assert reason(verifier, access, expected_type="refresh") == "wrong_type"
    assert reason(verifier, refresh, expected_type="refresh") == reason(verifier, access) == "ok"


def test_no_token_reaches_a_log_or_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    verifier = TokenVerifier(key=KEY_A, clock=clock)
    good, bad, expiring = mint(), mint(KEY_B, kid=False), mint(exp=int(NOW) + 10)
    refusals = []
    with caplog.at_level(logging.DEBUG):
        for token in (expiring, good, good, bad, expiring):
            try:
                verifier.verify(token)
            except InvalidToken as refused:
                refusals.append(refused)
            clock.now += 30
    assert len(refusals) == 2
    for token in (good, bad, expiring):
        signature = token.rpartition(".")[2]
        assert signature not in caplog.text
        assert all(signature not in f"{refused!r} {refused.description}" for refused in refusals)


@pytest.mark.anyio
async def test_identity_provider_keys_replaced_or_removed_are_followed(checks: list[str]) -> None:
    """A JWKS refetch that returns the same keys costs no new check; one that replaces a key under the
    same kid, or withdraws it, makes the remembered token be verified afresh, and refused."""
    clock = Clock(1000.0)  # the key set's own clock: the age of its cached document
    with IdentityProvider("ES256", max_age=60) as idp:
        jwks = JwksKeySet(idp.url, algorithm="ES256", min_age=60, refetch_interval=1, clock=clock)
        verifier = TokenVerifier(key=KEY_A, jwks=jwks, issuer=ISSUER, audience=AUDIENCE)

        async def refetched(kid: str) -> None:
            clock.now += 61
            jwks.for_token(kid)  # past its max-age: this lookup starts a refresh in the background
            if jwks._fetching is not None:
                await jwks._fetching
            assert jwks.fresh_until > clock.now

        token = idp.token()
        assert (await verifier.verify_fetching(token))["type"] == "access"
        await refetched(idp.current.kid)
        assert reason(verifier, token) == "ok" and checks == [token]  # the same key, rebuilt: no new check

        impostor = SigningKey("ES256")
        impostor.kid = idp.current.kid  # the provider replaced the key and kept its kid
        idp.keys = [impostor]
        await refetched(impostor.kid)
        assert reason(verifier, token) == "bad_signature" and checks == [token, token]

        other = idp.token(key=impostor)
        assert reason(verifier, other) == "ok"
        idp.rotate(keep_old=False)  # the key is withdrawn
        await refetched(impostor.kid)
        assert reason(verifier, other) == "unknown_key"
