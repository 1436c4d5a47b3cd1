"""The client's address: from the ASGI scope, or from ``X-Forwarded-For`` only behind trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from gateway.types import Scope


class ClientAddress:
    """``trusted_proxies`` are addresses or networks (``10.0.0.0/8``) whose ``X-Forwarded-For`` is
    believed; the client is the right-most address in that header not itself a trusted proxy."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(item, strict=False) for item in trusted_proxies]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def __call__(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self.networks or not self._trusted(peer):
            return str(peer)
        forwarded = b",".join(value for name, value in scope["headers"] if name == b"x-forwarded-for")
        hops = [hop.strip() for hop in forwarded.decode("latin-1").split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return str(peer)  # garbage in the header: fall back to the proxy itself
        return str(peer)
