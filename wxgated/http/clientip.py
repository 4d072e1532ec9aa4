"""The client's address, believing X-Forwarded-For only from `server.trusted_proxies`.

Walking X-Forwarded-For from the right and stopping at the first address that is not a
trusted proxy is the only reading a client cannot spoof: everything left of that is
whatever the client chose to send.

The address found becomes X-Real-IP, a rate-limit key and an access-log field, so it
must be an IP literal and nothing else: `ipaddress` alone would take `fe80::1%eth0`
(a zone id is any text, up to the next comma). A hop that is not a plain IPv4/IPv6
literal ends the walk and the peer address is used; the one returned is written the
canonical way, so `2001:DB8::1` and `2001:db8:0::1` are one client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_XFF = b"x-forwarded-for"
_OWS = " \t"
_CACHE_MAX = 4096


class ClientIPResolver:
    def __init__(self, trusted: Sequence[str]) -> None:
        self.nets: tuple[_Net, ...] = tuple(ipaddress.ip_network(c, strict=False)
                                            for c in trusted)
        self._cache: dict[str, tuple[str | None, bool]] = {}

    def _hop(self, text: str) -> tuple[str | None, bool]:
        """(the canonical address or None when `text` is not a literal, trusted?)."""
        hit = self._cache.get(text)
        if hit is None:
            canonical = ip_literal(text)
            is_trusted = canonical is not None and any(
                ipaddress.ip_address(canonical) in n for n in self.nets)
            hit = (canonical, is_trusted)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()  # hostile hops must not grow it without bound
            self._cache[text] = hit
        return hit

    def trusted(self, peer_ip: str) -> bool:
        """Is this peer a trusted proxy. The peer address comes from the kernel, so a
        link-local one may carry its zone (`fe80::1%eth0`): that is dropped here only."""
        return self._hop(peer_ip.partition("%")[0])[1]

    def resolve(self, peer_ip: str, xff: bytes | None,
                headers: Sequence[tuple[bytes, bytes]] = ()) -> str:
        """The client address. `xff` is the last X-Forwarded-For line; `headers`, when
        given, are searched for earlier ones (a list field may be split over lines,
        RFC 9110 §5.3: they are one list, in order)."""
        if not self.nets or xff is None or not self.trusted(peer_ip):
            return peer_ip
        hops = [h.strip(_OWS) for h in _joined(xff, headers).decode("latin-1").split(",")]
        hops = [h for h in hops if h]
        client = peer_ip
        for hop in reversed(hops):
            canonical, is_trusted = self._hop(hop)
            if canonical is None:
                return peer_ip  # not an address: nothing left of it can be believed
            client = canonical
            if not is_trusted:
                break
        return client  # all trusted: the leftmost is as far as anyone knows


def _joined(last: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    lines = [v for k, v in headers if k == _XFF]
    return b",".join(lines) if len(lines) > 1 else last


def ip_literal(text: str) -> str | None:
    """`text` as a canonical IPv4/IPv6 address when it is exactly one (no zone id, no
    brackets, no port, no whitespace), else None."""
    if "%" in text or not text.isascii():
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
