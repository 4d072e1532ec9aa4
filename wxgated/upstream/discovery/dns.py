"""DNS discovery: A/AAAA (every address, one port) or SRV (host, port, weight per record).

Uses dnspython's asyncio resolver rather than a hand-written client (retries across
resolvers, TCP fallback on truncation, and every RFC corner handled for us).

What counts as an answer (docs/OPERATIONS.md, "Discovery in a DNS outage"):
- NXDOMAIN and NOERROR-without-records are authoritative "there are no instances"
  (a Kubernetes headless service scaled to 0, a Consul service with no healthy
  instance): the pool empties and requests get the usual 503.
- Timeouts, SERVFAIL/REFUSED and unreachable resolvers are failed refreshes: the
  last-known targets stay, because the registry being down says nothing about them.
SRV: only the lowest priority value present is used (the others are backups for a
client that cannot reach it, which health checks and the breaker cover here); the
record's weight becomes the balancer weight (0, "almost never" in RFC 2782, becomes 1,
the smallest the balancer has).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from wxgated.config.spec import duration
from wxgated.upstream.discovery.base import Answer, DiscoveryError, Endpoint

QUERY_TIMEOUT = 2.0  # per refresh, all resolvers together


def parse_resolver(text: str) -> dns.nameserver.Do53Nameserver:
    """`host`, `host:port` or `[v6]:port` as a plain-DNS nameserver (port 53 by default)."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    return dns.nameserver.Do53Nameserver(host, port)


class DnsProvider:
    kind = "dns"

    def __init__(self, name: str, rtype: str = "A", port: int | None = None,
                 resolvers: Iterable[str] = (), min_ttl: float = 1.0,
                 max_ttl: float = 60.0, timeout: float = QUERY_TIMEOUT) -> None:
        self.name = name
        self.rtype = rtype
        self.port = port
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.timeout = timeout
        servers = [parse_resolver(r) for r in resolvers]
        # no resolvers listed: the host's own (/etc/resolv.conf), as any client would
        self.resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            self.resolver.nameservers = servers

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> DnsProvider:
        """From a `discovery.dns:` mapping (already validated)."""
        port = cfg.get("port")
        return cls(cfg["name"], cfg.get("type", "A"), None if port is None else int(port),
                   cfg.get("resolvers") or (), duration(cfg.get("min_ttl"), 1.0),
                   duration(cfg.get("max_ttl"), 60.0))

    async def resolve(self) -> Answer:
        if self.rtype == "SRV":
            return await self._resolve_srv()
        assert self.port is not None  # the semantic check requires it for A/AAAA
        ttl, addresses = await self._lookup(self.name, self.rtype)
        return Answer(tuple(Endpoint(a, self.port) for a in addresses), ttl)

    async def _lookup(self, name: str, rtype: str) -> tuple[float, list[str]]:
        """(ttl, records as text); no records at all is ([], min_ttl), never an error."""
        try:
            ans = await self.resolver.resolve(name, rtype, search=False, lifetime=self.timeout,
                                              raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return self.min_ttl, []
        except dns.exception.DNSException as exc:
            raise DiscoveryError(f"{rtype} {name}: {type(exc).__name__}: {exc}") from exc
        if ans.rrset is None:
            return self.min_ttl, []
        return float(ans.rrset.ttl), [r.to_text() for r in ans.rrset]

    async def _resolve_srv(self) -> Answer:
        try:
            ans = await self.resolver.resolve(self.name, "SRV", search=False,
                                              lifetime=self.timeout, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return Answer((), self.min_ttl)
        except dns.exception.DNSException as exc:
            raise DiscoveryError(f"SRV {self.name}: {type(exc).__name__}: {exc}") from exc
        records = [r for r in (ans.rrset or ()) if r.target != dns.name.root]
        if not records:
            return Answer((), self.min_ttl)
        best = min(r.priority for r in records)
        chosen = [r for r in records if r.priority == best]
        hosts = sorted({r.target.to_text() for r in chosen})
        looked = await asyncio.gather(*(self._addresses(h) for h in hosts))
        by_host = dict(zip(hosts, looked, strict=True))
        ttl = min([float(ans.rrset.ttl), *(t for t, _ in looked)])  # type: ignore[union-attr]
        weights: dict[tuple[str, int], int] = {}
        for r in chosen:
            for address in by_host[r.target.to_text()][1]:
                key = (address, int(r.port))
                weights[key] = weights.get(key, 0) + max(1, int(r.weight))
        return Answer(tuple(Endpoint(h, p, w) for (h, p), w in weights.items()), ttl)

    async def _addresses(self, host: str) -> tuple[float, list[str]]:
        """An SRV target's addresses: A, else AAAA."""
        ttl, found = await self._lookup(host, "A")
        if found:
            return ttl, found
        return await self._lookup(host, "AAAA")
