"""Rotating the signing key, step by step: the current key signs, the previous keys still verify."""

from gateway import InvalidToken, KeySet, TokenIssuer, TokenVerifier

OLD, NEW = "the-old-secret-0123456789abcdef0123", "the-new-secret-0123456789abcdef0123"


def check(verifier: TokenVerifier, token: str, label: str) -> None:
    try:
        print(f"{label}: accepted, sub={verifier.verify(token)['sub']}")
    except InvalidToken as refused:
        print(f"{label}: refused, {refused}")


# 1. Today: JWT_SECRET=OLD signs and verifies.
today = KeySet(OLD, algorithm="HS256")
old_token = TokenIssuer(keys=today).issue_pair("ayse", session_id="laptop").access_token

# 2. Rotate: JWT_SECRET=NEW, JWT_PREVIOUS_SECRETS=OLD, on every instance. New tokens are signed
#    with NEW; tokens signed with OLD still pass. Nobody is logged out.
rotating = KeySet(NEW, algorithm="HS256", previous=[OLD])
new_token = TokenIssuer(keys=rotating).issue_pair("emre", session_id="phone").access_token
check(TokenVerifier(keys=rotating), old_token, "step 2, a token signed with OLD")
check(TokenVerifier(keys=rotating), new_token, "step 2, a token signed with NEW")

# 3. Wait until every token signed with OLD has expired (the longest lifetime, plus the leeway).

# 4. Retire OLD: JWT_SECRET=NEW, JWT_PREVIOUS_SECRETS empty.
retired = KeySet(NEW, algorithm="HS256")
check(TokenVerifier(keys=retired), old_token, "step 4, a token signed with OLD")
check(TokenVerifier(keys=retired), new_token, "step 4, a token signed with NEW")
