"""A Consul stand-in speaking the 1.x health API the provider uses, as documented in
Consul's HTTP API reference (/v1/health/service/:service, "Blocking Queries", ACL):

- `GET /v1/health/service/<name>` answers a JSON list of `{Node, Service, Checks}` with
  an `X-Consul-Index` header; `passing=true` drops entries with a non-passing check,
  `tag=` keeps entries carrying the tag, `dc=` picks the datacenter (an unknown one is
  `500 No path to datacenter`), a service nobody registered is `[]`.
- Blocking: with `index=N`, the request is held until the index is greater than N or
  `wait` (default 5m, at most 10m) elapses; so after the index went backwards (a
  snapshot restore) a client that does not reset to 0 waits out every `wait`.
- ACL: with a token configured, a request without `X-Consul-Token` (or `?token=`) is
  `403 Permission denied` (the anonymous token), a wrong one `403 ACL not found`.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tests.support.registry_standin import Standin


def instance(address: str, port: int, node_address: str = "10.9.9.9", weight: int | None = None,
             tags: tuple[str, ...] = (), passing: bool = True, dc: str = "dc1") -> dict[str, Any]:
    """One health entry; `address=""` registers no Service.Address (the node's applies)."""
    service: dict[str, Any] = {"ID": f"svc-{address}-{port}", "Service": "svc",
                               "Tags": list(tags), "Address": address, "Port": port,
                               "Meta": {}, "EnableTagOverride": False}
    if weight is not None:
        service["Weights"] = {"Passing": weight, "Warning": 1}
    checks = [{"Node": "n", "CheckID": "serfHealth", "Name": "Serf Health Status",
               "Status": "passing"},
              {"Node": "n", "CheckID": f"service:{service['ID']}", "Name": "http",
               "Status": "passing" if passing else "critical"}]
    return {"Node": {"Node": f"node-{node_address}", "Address": node_address,
                     "Datacenter": dc},
            "Service": service, "Checks": checks}


def parse_wait(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", text)
    if m is None:
        raise web.HTTPBadRequest(text=f"Invalid wait time {text!r}")
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]
    return min(float(m.group(1)) * unit, 600.0)


class ConsulStandin(Standin):
    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token
        self.index = 10
        self.services: dict[str, list[dict[str, Any]]] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/health/service/{name}", self.health)

    def set_instances(self, service: str, entries: list[dict[str, Any]]) -> None:
        def apply() -> None:
            self.services[service] = entries
            self.index += 1
        self.change(apply)

    def set_index(self, index: int) -> None:
        """Move the index (down: a snapshot restore), waking held queries."""
        def apply() -> None:
            self.index = index
        self.change(apply)

    def _acl(self, request: web.Request) -> None:
        given = request.headers.get("X-Consul-Token") or request.query.get("token")
        if self.token is None or given == self.token:
            return
        if not given:
            raise web.HTTPForbidden(text="Permission denied: anonymous token lacks "
                                         "permission 'service:read'")
        raise web.HTTPForbidden(text="ACL not found")

    async def health(self, request: web.Request) -> web.Response:
        q = request.query
        self.requests.append({"query": dict(q),
                              "token": request.headers.get("X-Consul-Token")})
        self._acl(request)
        dc = q.get("dc", "dc1")
        if dc not in ("dc1", "dc2"):
            raise web.HTTPInternalServerError(text="No path to datacenter")
        if "index" in q:
            asked = int(q["index"])
            await self.hold(lambda: self.index > asked, parse_wait(q.get("wait", "5m")))
        entries = [e for e in self.services.get(request.match_info["name"], [])
                   if e["Node"]["Datacenter"] == dc
                   and ("tag" not in q or q["tag"] in e["Service"]["Tags"])
                   and (q.get("passing") not in ("true", "1", "")
                        or all(c["Status"] == "passing" for c in e["Checks"]))]
        return web.json_response(entries, headers={"X-Consul-Index": str(self.index)})
