"""The one place Redis key names are built, so a deployment-wide prefix applies to every key."""

from __future__ import annotations


class Keys:
    """Builds the seed's key names (``listing:{id}``, ``blacklist:{jti}``, ...) behind an optional prefix.

    A prefix lets several deployments share one Redis without their keys meeting.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        return self.prefix + name

    def __repr__(self) -> str:
        return f"Keys(prefix={self.prefix!r})"
