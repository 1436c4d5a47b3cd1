"""``python -m bench.verify``: what ``TokenVerifier``'s memory of verified tokens saves, in one process.

For each algorithm (HS256, as the service signs by default; ES256 and RS256, as identity providers
sign), ``--tokens`` distinct access tokens are verified round-robin for ``--seconds``, twice: by a
verifier that remembers nothing (``max_remembered=0``: a signature check and claim parsing every time)
and by one with the default memory, warmed by one pass first (a dict lookup, the key set asked for
the token's key, the time checks). It prints verifications per second for both and their ratio, best
of ``--rounds`` rounds each. No Redis, no HTTP: this is the verifier alone.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway import KeySet, TokenIssuer, TokenVerifier
from gateway.tokens import new_id

SECRET = "bench-secret-bench-secret-bench-secret-0123"


def _pem(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def key_sets() -> Iterator[tuple[str, KeySet]]:
    yield "HS256", KeySet(SECRET, algorithm="HS256")
    yield "ES256", KeySet(_pem(ec.generate_private_key(ec.SECP256R1())), algorithm="ES256")
    yield "RS256", KeySet(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), algorithm="RS256")


def rate(verifier: TokenVerifier, tokens: list[str], seconds: float) -> float:
    """Verifications per second of ``tokens``, round-robin, for about ``seconds``."""
    done, started = 0, time.perf_counter()
    while True:
        for token in tokens:
            verifier.verify(token)
        done += len(tokens)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=1000, help="distinct tokens, verified round-robin")
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per case; the best is kept")
    options = parser.parse_args(argv)
    print(f"{'algorithm':<10} {'fresh /s':>12} {'remembered /s':>14} {'ratio':>8}")
    for name, keys in key_sets():
        issuer = TokenIssuer(keys=keys)
        tokens = [issuer.encode(issuer.claims(str(i), "access", session_id=new_id())) for i in range(options.tokens)]
        fresh = TokenVerifier(keys=keys, max_remembered=0)
        remembering = TokenVerifier(keys=keys)
        rate(remembering, tokens, 0)  # one pass: every token remembered
        fresh_rate = max(rate(fresh, tokens, options.seconds) for _ in range(options.rounds))
        remembered_rate = max(rate(remembering, tokens, options.seconds) for _ in range(options.rounds))
        print(f"{name:<10} {fresh_rate:>12,.0f} {remembered_rate:>14,.0f} {remembered_rate / fresh_rate:>7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
