"""Nacos discovery: the naming Open API's instance list (Nacos 2.x; v1 and v2 paths).

`GET /nacos/v1/ns/instance/list?serviceName=&groupName=&namespaceId=&clusters=
&healthyOnly=true` answers `{"hosts": [{"ip", "port", "weight", "healthy", "enabled",
...}], "cacheMillis": 10000, ...}`; `GET /nacos/v2/ns/instance/list` (same parameters,
`clusterName` for the clusters) wraps the same object as `{"code": 0, "message":
"success", "data": {...}}`. Either shape is accepted whichever path was asked. Why
polling: the Open API has no long poll for instances (the SDKs' push uses gRPC), and
`cacheMillis` is the server's own advice on how long an answer stays good; the Watcher
clamps it to min_ttl..max_ttl.

Only instances that are healthy and enabled count; `weight` (a float, 1.0 by default,
0 meaning "send nothing") becomes the balancer weight (`scale_weights`).
With `username`/`password` the provider logs in (nacos_auth) and sends `accessToken`;
a 403 drops the token and the query is retried once with a fresh one.

An answer is 200 with a `hosts` list (empty: zero instances). Anything else (refused,
timeout, 403 twice, a v2 `code` other than 0, 5xx) is a failed refresh.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import reduce
from typing import Any

from wxgated.upstream.discovery.base import Answer, DiscoveryError, Endpoint
from wxgated.upstream.discovery.httpapi import Reply, call, snippet
from wxgated.upstream.discovery.nacos_auth import NacosLogin

MIN_TTL = 1.0
MAX_TTL = 30.0
TIMEOUT = 5.0
WEIGHT_STEPS = 100  # weights are kept to 1/100 (Nacos' console shows two decimals)


class NacosProvider:
    kind = "nacos"

    def __init__(self, server: str, service: str, namespace: str | None = None,
                 group: str = "DEFAULT_GROUP", clusters: Iterable[str] = (),
                 username: str | None = None, password: str | None = None,
                 api: str = "v1", min_ttl: float = MIN_TTL, max_ttl: float = MAX_TTL
                 ) -> None:
        server = server.rstrip("/")
        self.url = f"{server}/nacos/{api}/ns/instance/list"
        self.api = api
        self.service = service
        self.namespace = namespace
        self.group = group
        self.clusters = ",".join(clusters)
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.login = NacosLogin(server, username, password or "", TIMEOUT) \
            if username else None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> NacosProvider:
        """From a `discovery.nacos:` mapping (already validated)."""
        return cls(cfg["server"], cfg["service"], cfg.get("namespace"),
                   cfg.get("group", "DEFAULT_GROUP"), cfg.get("clusters") or (),
                   cfg.get("username"), cfg.get("password"), cfg.get("api", "v1"))

    def query(self) -> dict[str, str]:
        params = {"serviceName": self.service, "groupName": self.group,
                  "healthyOnly": "true"}
        if self.namespace:
            params["namespaceId"] = self.namespace
        if self.clusters:
            params["clusterName" if self.api == "v2" else "clusters"] = self.clusters
        return params

    async def resolve(self) -> Answer:
        reply = await self._get()
        if reply.status == 403 and self.login is not None:
            self.login.refused()  # expired or revoked early: one fresh login, one retry
            reply = await self._get()
        if reply.status != 200:
            raise DiscoveryError(f"nacos {self.url}: {snippet(reply)}")
        hosts, cache_millis = parse_list(reply.body)
        return Answer(healthy_endpoints(hosts), cache_millis / 1000.0)

    async def _get(self) -> Reply:
        params = self.query()
        if self.login is not None:
            params["accessToken"] = await self.login.current()
        return await call("GET", self.url, TIMEOUT, params=params)


def parse_list(body: Any) -> tuple[list[dict[str, Any]], float]:
    """(hosts, cacheMillis) from a v1 answer or a v2 `{code, message, data}` one."""
    if isinstance(body, dict) and "code" in body and "hosts" not in body:
        if body.get("code") != 0:
            raise DiscoveryError(f"nacos answered code {body.get('code')}: "
                                 f"{body.get('message')}")
        body = body.get("data")
    if not isinstance(body, dict) or not isinstance(body.get("hosts"), list):
        raise DiscoveryError(f"nacos answer without a hosts list: {str(body)[:200]}")
    cache = body.get("cacheMillis")
    cache_millis = float(cache) if isinstance(cache, int | float) and cache > 0 else 10000.0
    return [h for h in body["hosts"] if isinstance(h, dict)], cache_millis


def healthy_endpoints(hosts: Iterable[Mapping[str, Any]]) -> tuple[Endpoint, ...]:
    """The healthy, enabled instances with a weight above 0, weights scaled to integers."""
    chosen: dict[tuple[str, int], float] = {}
    for h in hosts:
        ip, port, weight = h.get("ip"), h.get("port"), h.get("weight", 1.0)
        if h.get("healthy") is not True or h.get("enabled", True) is not True:
            continue
        if not isinstance(ip, str) or not ip or not isinstance(port, int) or \
                not 0 < port < 65536 or not isinstance(weight, int | float) or weight <= 0:
            continue
        chosen[(ip, port)] = float(weight)
    scaled = scale_weights(list(chosen.values()))
    return tuple(Endpoint(ip, port, w) for (ip, port), w in zip(chosen, scaled, strict=True))


def scale_weights(weights: list[float]) -> list[int]:
    """Float weights as the smallest integers with the same ratios (to 1/100).

    Why: the balancer's weights are integers. 1.0/1.0 stays 1/1, 1.5/0.5 becomes 3/1,
    0.25/1 becomes 1/4; a weight that rounds to 0 at that precision still gets 1."""
    steps = [max(1, round(w * WEIGHT_STEPS)) for w in weights]
    common = reduce(math.gcd, steps, 0) or 1
    return [s // common for s in steps]
