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

The config Open API (v1, as Nacos 1.x and 2.x serve it; ConfigController and
LongPollingService in the server):
- `GET /nacos/v1/cs/configs?dataId=&group=&tenant=` answers the raw content as
  `text/plain;charset=UTF-8` with `Content-MD5` and `Config-Type` headers, 404 `config
  data not exist` when absent, 400 without dataId or group, 403 without a token when
  auth is on.
- `POST /nacos/v1/cs/configs/listener`, form `Listening-Configs` =
  `dataId^2group^2md5[^2tenant]^1...` (^2 = the byte 2, ^1 = the byte 1): when an MD5 differs from
  the server's (an absent config has MD5 ""), the answer is at once the URL-encoded
  `dataId^2group[^2tenant]^1` of each changed config; otherwise, with a
  `Long-Pulling-Timeout: N` header, the request is held until one changes (answered
  then) or N - 500 ms pass (an empty 200); without the header, an empty 200 at once.
- `POST /nacos/v1/cs/configs` (form dataId, group, tenant, content, type) publishes
  and answers `true`; publishing wakes held listeners.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.support.registry_standin import Standin


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
        self.configs: dict[tuple[str, str, str], str] = {}  # (tenant, group, dataId)
        self.listens: list[dict[str, Any]] = []  # what each listener request carried
        self._seq = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/nacos/v1/auth/login", self.login)
        app.router.add_get("/nacos/v1/ns/instance/list", self.list_v1)
        app.router.add_get("/nacos/v2/ns/instance/list", self.list_v2)
        app.router.add_get("/nacos/v1/cs/configs", self.get_config)
        app.router.add_post("/nacos/v1/cs/configs", self.publish_config)
        app.router.add_post("/nacos/v1/cs/configs/listener", self.listener)

    def publish(self, data_id: str, content: str, group: str = "DEFAULT_GROUP",
                tenant: str = "") -> None:
        self.change(lambda: self.configs.__setitem__((tenant, group, data_id), content))

    def md5(self, key: tuple[str, str, str]) -> str:
        content = self.configs.get(key)
        return "" if content is None else hashlib.md5(content.encode()).hexdigest()

    async def get_config(self, request: web.Request) -> web.Response:
        q = request.query
        self.requests.append({"path": request.path, "query": dict(q)})
        self._auth(request)
        if not q.get("dataId") or not q.get("group"):
            raise web.HTTPBadRequest(text="parameter missing")
        key = (q.get("tenant", ""), q["group"], q["dataId"])
        if key not in self.configs:
            raise web.HTTPNotFound(text="config data not exist")
        return web.Response(text=self.configs[key], content_type="text/plain",
                            charset="utf-8", headers={"Content-MD5": self.md5(key),
                                                      "Config-Type": "yaml"})

    async def publish_config(self, request: web.Request) -> web.Response:
        form = await request.post()
        self._auth(request, form.get("accessToken"))
        if not form.get("dataId") or not form.get("group") or "content" not in form:
            raise web.HTTPBadRequest(text="parameter missing")
        self.publish(str(form["dataId"]), str(form["content"]), str(form["group"]),
                     str(form.get("tenant", "")))
        return web.Response(text="true")

    async def listener(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.listens.append({"query": dict(request.query), "form": dict(form),
                             "headers": dict(request.headers)})
        self._auth(request, form.get("accessToken"))
        probe = str(form.get("Listening-Configs", ""))
        if not probe:
            raise web.HTTPBadRequest(text="invalid probeModify")
        wanted: dict[tuple[str, str, str], str] = {}
        for item in probe.split("\x01"):
            if not item:
                continue
            fields = item.split("\x02")
            if len(fields) not in (3, 4):
                raise web.HTTPBadRequest(text="invalid probeModify")
            wanted[(fields[3] if len(fields) == 4 else "", fields[1], fields[0])] = fields[2]

        def stale() -> list[tuple[str, str, str]]:
            return [k for k, md5 in wanted.items() if self.md5(k) != md5]

        timeout = request.headers.get("Long-Pulling-Timeout")
        if not stale() and timeout is not None:
            await self.hold(lambda: bool(stale()), max(0.0, int(timeout) / 1000 - 0.5))
        changed = "".join(quote("\x02".join([d, g, t] if t else [d, g]) + "\x01", safe="")
                          for t, g, d in stale())
        return web.Response(text=changed, content_type="text/html", charset="utf-8")

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

    def _auth(self, request: web.Request, form_token: Any = None) -> None:
        if self.users is None:
            return
        token = request.query.get("accessToken") or (str(form_token) if form_token else None)
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
