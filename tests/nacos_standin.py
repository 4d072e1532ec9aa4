"""A Nacos stand-in speaking the 2.x naming Open API the provider uses, as documented
in Nacos' "Open API" guide (v1) and "Open API 2.X" guide, plus the auth guide:

- `GET /nacos/v1/ns/instance/list?serviceName=&groupName=&namespaceId=&clusters=
  &healthyOnly=` answers `{name: "group@@service", groupName, clusters, cacheMillis,
  hosts: [{instanceId, ip, port, weight, healthy, enabled, ephemeral, clusterName,
  serviceName, metadata}], lastRefTime, checksum, allIPs, reachProtectionThreshold,
  valid}`; an unknown service has `hosts: []`. `healthyOnly=true` drops unhealthy
  instances (disabled ones are still listed, as in Nacos).
- `GET /nacos/v2/ns/instance/list` takes `clusterName` instead of `clusters` and
  answers `{code: 0, message: "success", data: <the same object>}`.
- Auth (`nacos.core.auth.enabled=true`): `POST /nacos/v1/auth/login` with form
  `username`, `password` answers `{accessToken, tokenTtl, globalAdmin}` (403 `unknown
  user!` otherwise); a list without a valid, unexpired `accessToken` is 403.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from aiohttp import web

from tests.registry_standin import Standin


def host(ip: str, port: int, weight: float = 1.0, healthy: bool = True, enabled: bool = True,
         cluster: str = "DEFAULT") -> dict[str, Any]:
    return {"ip": ip, "port": port, "weight": weight, "healthy": healthy, "enabled": enabled,
            "ephemeral": True, "clusterName": cluster, "metadata": {}, "marked": False}


class NacosStandin(Standin):
    def __init__(self, users: dict[str, str] | None = None, token_ttl: int = 18000,
                 cache_millis: int = 1000) -> None:
        super().__init__()
        self.users = users  # None: auth disabled
        self.token_ttl = token_ttl
        self.cache_millis = cache_millis
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.logins = 0
        self.services: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._seq = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/nacos/v1/auth/login", self.login)
        app.router.add_get("/nacos/v1/ns/instance/list", self.list_v1)
        app.router.add_get("/nacos/v2/ns/instance/list", self.list_v2)

    def set_hosts(self, service: str, hosts: list[dict[str, Any]], group: str = "DEFAULT_GROUP",
                  namespace: str = "public") -> None:
        self.change(lambda: self.services.__setitem__((namespace, group, service), hosts))

    def revoke_tokens(self) -> None:
        self.change(self.tokens.clear)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        user, password = form.get("username"), form.get("password")
        if self.users is None or self.users.get(str(user)) != password:
            raise web.HTTPForbidden(text="unknown user!")
        self.logins += 1
        token = f"token-{next(self._seq)}"
        self.tokens[token] = time.monotonic() + self.token_ttl
        return web.json_response({"accessToken": token, "tokenTtl": self.token_ttl,
                                  "globalAdmin": False})

    def _auth(self, request: web.Request) -> None:
        if self.users is None:
            return
        token = request.query.get("accessToken")
        expiry = self.tokens.get(token or "")
        if expiry is None:
            raise web.HTTPForbidden(text="user not found!" if not token else "token invalid!")
        if time.monotonic() >= expiry:
            raise web.HTTPForbidden(text="token expired!")

    def _list(self, request: web.Request, clusters_param: str) -> dict[str, Any]:
        q = request.query
        self.requests.append({"path": request.path, "query": dict(q)})
        self._auth(request)
        if not q.get("serviceName"):
            raise web.HTTPBadRequest(text="Param 'serviceName' is required.")
        group = q.get("groupName", "DEFAULT_GROUP")
        key = (q.get("namespaceId", "public"), group, q["serviceName"])
        clusters = [c for c in q.get(clusters_param, "").split(",") if c]
        hosts = [dict(h, serviceName=f"{group}@@{key[2]}",
                      instanceId=f"{h['ip']}#{h['port']}#{h['clusterName']}#{group}@@{key[2]}")
                 for h in self.services.get(key, [])
                 if (not clusters or h["clusterName"] in clusters)
                 and (q.get("healthyOnly") != "true" or h["healthy"])]
        return {"name": f"{group}@@{key[2]}", "groupName": group, "clusters": ",".join(clusters),
                "cacheMillis": self.cache_millis, "hosts": hosts,
                "lastRefTime": int(time.time() * 1000), "checksum": "", "allIPs": False,
                "reachProtectionThreshold": False, "valid": True}

    async def list_v1(self, request: web.Request) -> web.Response:
        return web.json_response(self._list(request, "clusters"))

    async def list_v2(self, request: web.Request) -> web.Response:
        return web.json_response({"code": 0, "message": "success",
                                  "data": self._list(request, "clusterName")})
