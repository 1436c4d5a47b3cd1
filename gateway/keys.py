"""The one place Redis key names are built, so a deployment-wide prefix (and, on Redis Cluster, the
hash tag) applies to every key."""

from __future__ import annotations


class Keys:
    """Builds the seed's key names (``listing:{id}``, ``blacklist:{jti}``, ``session:{user_id}``, ...)
    behind an optional prefix, so several deployments can share one Redis.

    With ``cluster=True``, every key of one user carries the user as a hash tag
    (``session:{42}``, ``blacklist:{42}:<jti>``, ``rate_limit:{42}:GET /listings/{listing_id}``):
    the scripts that touch several keys per request then find them in one slot (no CROSSSLOT), and
    different users spread over the cluster. Left alone, the braces of a route template would be the
    tag, and every user's counter for that endpoint would sit in one slot on one node.
    """

    __slots__ = ("cluster", "prefix")

    def __init__(self, prefix: str = "", *, cluster: bool = False) -> None:
        self.prefix = prefix
        self.cluster = cluster

    def __call__(self, name: str) -> str:
        return self.prefix + name

    def user(self, family: str, user_id: str, rest: str = "") -> str:
        """``family:user_id[:rest]``, tagged by the user on a cluster."""
        owner = f"{{{user_id}}}" if self.cluster else user_id
        return f"{self.prefix}{family}:{owner}{':' + rest if rest else ''}"

    def blacklist(self, user_id: str, jti: str) -> str:
        """``blacklist:{jti}``; on a cluster ``blacklist:{user_id}:jti``, in its user's slot."""
        return self.user("blacklist", user_id, jti) if self.cluster else f"{self.prefix}blacklist:{jti}"

    def epoch(self, user_id: str) -> str:
        """The data-loss epoch. One per Redis; on a cluster, per user (see ``TokenBlacklist``)."""
        return self.user("epoch", user_id) if self.cluster else f"{self.prefix}epoch"

    def __repr__(self) -> str:
        return f"Keys(prefix={self.prefix!r}, cluster={self.cluster})"
