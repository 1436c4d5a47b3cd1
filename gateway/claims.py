"""What tokens are made of, shared by the token, key-set and JWKS modules: the claims type, the
algorithms Kapı accepts, and ``InvalidToken``."""

from __future__ import annotations

from typing import Any, Literal

#: The ``type`` claim of Kapı's tokens.
TokenType = Literal["access", "refresh"]
#: A token's claims, as verified (``sub``, ``jti``, ``iat``, ``exp``, ``type``, ``sid``, and any others).
Claims = dict[str, Any]

#: The HMAC algorithms, whose key is a shared secret (the others take PEM keys).
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ALGORITHMS = HMAC_ALGORITHMS | {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}


class InvalidToken(Exception):
    """The token cannot be accepted; ``reason`` is a short machine label (for metrics), the message
    is safe to show to the client (``error_description``) and never contains the token."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description
