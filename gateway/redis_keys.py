"""Redis key names (signing keys are ``gateway.signing_keys``): the one place they are built, so a
deployment-wide prefix (and, on Redis Cluster, the hash tag) applies to every key, and no value
taken from a request or a token can forge a key.

Values from outside (a token's ``sub``, ``jti``, ``sid``; a cache decorator's arguments) are
*escaped*: ``%``, ``:``, ``{`` and ``}`` become ``%25``, ``%3A``, ``%7B``, ``%7D``. Key parts are
joined with ``:``, so an escaped value can never reach into the next part, another family or
another user's keys: a token whose ``sub`` is ``ip:127.0.0.1`` gets the keys of ``ip%3A127.0.0.1``,
never those of the anonymous client at 127.0.0.1, whose identity (``ip:…``) is built here and keeps
its colon. Ordinary ids (``42``, UUIDs, E.164 numbers) contain none of the four characters and read
exactly as the seed writes them (``session:42``).
"""

from __future__ import annotations

_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})
_SPECIAL = frozenset("%:{}")


def escape(value: str) -> str:
    """``value`` with ``% : { }`` percent-encoded: safe as one part of a key (and as a hash tag)."""
    if _SPECIAL.isdisjoint(value):
        return value
    return value.translate(_ESCAPES)


class Keys:
    """Builds the seed's key names (``listing:{id}``, ``session:{user_id}``, ...) behind an optional
    prefix, so several deployments can share one Redis.

    A key *owner* is a user (a token's ``sub``, escaped) or a client identity built here
    (:meth:`client`: ``ip:{address}``, ``phone:{number}``). With ``cluster=True`` the owner is the
    hash tag (``session:{42}``, ``rate_limit:{42}:GET /listings/{listing_id}``): the scripts that
    touch several keys per request then find them in one slot (no CROSSSLOT), and different users
    spread over the cluster. Left alone, the braces of a route template would be the tag, and every
    user's counter for that endpoint would sit in one slot on one node.
    """

    __slots__ = ("_built", "cluster", "prefix")

    #: Keys built for the callers seen lately (a request builds the same few keys again and again).
    MEMO_SIZE = 65536

    def __init__(self, prefix: str = "", *, cluster: bool = False) -> None:
        self.prefix = prefix
        self.cluster = cluster
        self._built: dict[tuple[str, ...], str] = {}

    def __call__(self, name: str) -> str:
        """A key the application names itself (``test_cache``), behind the prefix."""
        return self.prefix + name

    @staticmethod
    def client(kind: str, value: str) -> str:
        """The owner id of a caller known by something other than a token: ``client("ip", addr)``
        is ``ip:{addr}``. Its colon keeps it apart from every user id, whose colons are escaped."""
        return f"{kind}:{value}"

    def owned(self, family: str, owner: str, *rest: str) -> str:
        """``family:owner[:rest...]`` for an owner made by :meth:`client` (not escaped again)."""
        tagged = f"{{{owner}}}" if self.cluster else owner
        tail = "".join(":" + part for part in rest)
        return f"{self.prefix}{family}:{tagged}{tail}"

    def user(self, family: str, user_id: str, *rest: str) -> str:
        """``family:user_id[:rest...]`` for a user id from a token (escaped)."""
        memo = (family, user_id, *rest)
        key = self._built.get(memo)
        if key is None:
            if len(self._built) >= self.MEMO_SIZE:
                self._built.clear()
            key = self._built[memo] = self.owned(family, escape(user_id), *rest)
        return key

    def __repr__(self) -> str:
        return f"Keys(prefix={self.prefix!r}, cluster={self.cluster})"
