"""The client's address, believing X-Forwarded-For only from `server.trusted_proxies`.

Walking X-Forwarded-For from the right and stopping at the first address that is not a
trusted proxy is the only reading a client cannot spoof: everything left of that is
whatever the client chose to send.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientIPResolver:
    def __init__(self, trusted: Sequence[str]) -> None:
        self.nets: tuple[_Net, ...] = tuple(ipaddress.ip_network(c, strict=False)
                                            for c in trusted)
        self._cache: dict[str, bool] = {}

    def trusted(self, ip: str) -> bool:
        hit = self._cache.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
                hit = any(addr in n for n in self.nets)
            except ValueError:
                hit = False
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[ip] = hit
        return hit

    def resolve(self, peer_ip: str, xff: bytes | None) -> str:
        if not self.nets or xff is None or not self.trusted(peer_ip):
            return peer_ip
        hops = [h.strip() for h in xff.decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return hop if _is_ip(hop) else peer_ip
        return hops[0] if hops and _is_ip(hops[0]) else peer_ip


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
