"""A small identity provider for tests: a Starlette app under uvicorn on 127.0.0.1 (in a thread)
serving a JWKS of keys it generates with ``cryptography``, counting every fetch, able to rotate its
keys and to stop answering; and it signs tokens the way Keycloak or Auth0 would."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.signing_keys import public_jwk, thumbprint
from gateway.testing import free_port

ISSUER = "https://idp.kapi.test/realms/market"
AUDIENCE = "listings-api"


class SigningKey:
    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        if algorithm.startswith("RS"):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
        self.jwk = public_jwk(self.private.public_key())
        self.kid = thumbprint(self.jwk)[:16]
        self.pem = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.public_pem = (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        # The loaded key: a PEM would be parsed again on every call (~40 ms each).
        return str(jwt.encode(claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid, **header}))


class IdentityProvider:
    def __init__(self, algorithm: str = "RS256", *, max_age: int = 300) -> None:
        self.algorithm = algorithm
        self.max_age = max_age
        self.keys = [SigningKey(algorithm)]
        self.fetches = 0
        self.down = False
        app = Starlette(routes=[Route("/realms/market/certs", self._certs)])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/realms/market/certs"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def _certs(self, request: Request) -> JSONResponse:
        self.fetches += 1
        if self.down:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        keys = [{**key.jwk, "kid": key.kid, "use": "sig", "alg": key.algorithm} for key in self.keys]
        return JSONResponse({"keys": keys}, headers={"Cache-Control": f"public, max-age={self.max_age}"})

    def __enter__(self) -> IdentityProvider:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the identity provider did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def current(self) -> SigningKey:
        return self.keys[-1]

    def rotate(self, *, keep_old: bool = True) -> SigningKey:
        """A new signing key (published beside the old one, as IdPs do during a rotation)."""
        key = SigningKey(self.algorithm)
        self.keys = [*self.keys, key] if keep_old else [key]
        return key

    def token(self, sub: str = "kc-user-1", *, key: SigningKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300,
                "jti": f"kc-{time.monotonic_ns()}", "typ": "Bearer", **claims}  # fmt: skip
        return (key or self.current).sign({k: v for k, v in body.items() if v is not None})
