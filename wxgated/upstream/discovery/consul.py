"""Consul discovery: the health API with blocking queries (Consul 1.x).

`GET /v1/health/service/<service>?passing=true` lists the instances whose every check
passes (`tag` and `dc` narrow it). Why blocking queries: the first request returns at
once with `X-Consul-Index`; each next one sends `index=<that>&wait=<wait>` and Consul
holds it until the service's health changes or `wait` elapses, so a change reaches the
gateway within one round trip instead of a polling interval. The Watcher's `ttl` for
these answers is 0: the next (blocking) query is sent after `min_ttl`, which is also
the rate limit Consul's docs ask clients to keep.

Index rules from Consul's "Blocking Queries" docs: an index that goes backwards (a
snapshot restore, a new cluster) is reset to 0, and an index of 0 in an answer is forced
to 1 so the next query does not return at once forever.

What counts as an answer: 200 with a list (empty: zero instances, the pool empties).
Anything else (connection refused, timeout, 403 for a missing or wrong ACL token, 5xx)
is a failed refresh and the last targets stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from wxgated.config.spec import duration
from wxgated.upstream.discovery.base import Answer, DiscoveryError, Endpoint
from wxgated.upstream.discovery.httpapi import call, snippet

MIN_TTL = 1.0  # between two queries, and the first retry delay after a failure
MAX_TTL = 30.0  # the cap of the retry back-off
CONNECT_SLACK = 5.0  # on top of wait + wait/16 (Consul adds up to wait/16 of jitter)


class ConsulProvider:
    kind = "consul"

    def __init__(self, server: str, service: str, tag: str | None = None,
                 datacenter: str | None = None, token: str | None = None,
                 wait: float = 30.0, min_ttl: float = MIN_TTL, max_ttl: float = MAX_TTL
                 ) -> None:
        self.url = f"{server.rstrip('/')}/v1/health/service/{quote(service, safe='')}"
        self.tag = tag
        self.datacenter = datacenter
        self.token = token
        self.wait = wait
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.index = 0  # X-Consul-Index of the last answer; 0: ask without blocking

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ConsulProvider:
        """From a `discovery.consul:` mapping (already validated)."""
        return cls(cfg["server"], cfg["service"], cfg.get("tag"), cfg.get("datacenter"),
                   cfg.get("token"), duration(cfg.get("wait"), 30.0))

    def query(self) -> dict[str, str]:
        params = {"passing": "true"}
        if self.tag:
            params["tag"] = self.tag
        if self.datacenter:
            params["dc"] = self.datacenter
        if self.index > 0:
            params["index"] = str(self.index)
            params["wait"] = f"{self.wait:g}s"
        return params

    async def resolve(self) -> Answer:
        headers = {"X-Consul-Token": self.token} if self.token else {}
        timeout = (self.wait + self.wait / 16 if self.index else 0) + CONNECT_SLACK
        reply = await call("GET", self.url, timeout, params=self.query(), headers=headers)
        if reply.status != 200 or not isinstance(reply.body, list):
            raise DiscoveryError(f"consul {self.url}: {snippet(reply)}")
        self.index = next_index(self.index, reply.headers.get("X-Consul-Index"))
        return Answer(parse_health(reply.body), 0.0)


def next_index(last: int, header: str | None) -> int:
    """The index for the next blocking query (the docs' reset and sanity rules)."""
    try:
        new = int(header or "0")
    except ValueError:
        return 0  # no usable index: ask without blocking next time
    if new < last:
        return 0  # went backwards: start over
    return max(new, 1)


def parse_health(entries: list[Any]) -> tuple[Endpoint, ...]:
    """Endpoints from a health-service answer: passing instances only (also checked here,
    in case a proxy dropped `passing=true`); Service.Address, or the node's address when
    the service registered none; Service.Weights.Passing as the balancer weight."""
    found: dict[tuple[str, int], int] = {}
    for entry in entries:
        service = entry.get("Service") or {}
        checks = entry.get("Checks") or []
        if any(c.get("Status") != "passing" for c in checks):
            continue
        host = service.get("Address") or (entry.get("Node") or {}).get("Address")
        port = service.get("Port")
        if not host or not isinstance(port, int) or not 0 < port < 65536:
            continue
        weight = (service.get("Weights") or {}).get("Passing", 1)
        found[(host, port)] = max(1, int(weight)) if isinstance(weight, int | float) else 1
    return tuple(Endpoint(h, p, w) for (h, p), w in found.items())
