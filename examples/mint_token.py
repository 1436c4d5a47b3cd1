"""Print an access token for trying the examples: ``python -m examples.mint_token ayse``.

Your app mints its tokens in its own sign-in route, after checking a password or a code (or takes them
from an identity provider); this stands in for that. It signs with ``JWT_SECRET``, as the examples
verify, and first records the revocation epoch in the Redis at ``REDIS_URL`` (once per Redis): the
gateway refuses tokens issued before that moment, so a sign-in route calls ``ensure_epoch`` too,
at start-up or before its first token."""

import asyncio
import os
import secrets
import sys

from redis.asyncio import Redis

from gateway import RedisUnavailable, TokenBlacklist, TokenIssuer


async def mint(user_id: str) -> str:
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"), socket_timeout=1)
    try:
        await TokenBlacklist(redis).ensure_epoch()
    finally:
        await redis.aclose()
    issuer = TokenIssuer(key=os.environ["JWT_SECRET"], algorithm="HS256", access_ttl=3600)
    login = secrets.token_urlsafe(16)  # the login (sid) the token belongs to
    return issuer.issue_pair(user_id, session_id=login).access_token


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m examples.mint_token USER_ID")
    if not os.environ.get("JWT_SECRET"):
        sys.exit("Set JWT_SECRET first, to the same value as the app's.")
    try:
        print(asyncio.run(mint(sys.argv[1])))
    except RedisUnavailable:
        sys.exit("No Redis answers at REDIS_URL (default redis://localhost:6379/0): start one, or set REDIS_URL.")
