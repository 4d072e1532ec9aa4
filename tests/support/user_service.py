"""A user service for the login-hook and verified-data black-box tests: a real aiohttp
app that records every request it gets (path, headers, raw body) and answers by the
caller: the openid's prefix picks how the hook answers, the phone number how the phone
backend answers, so one gateway config covers the good and the failing cases."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.servers import ThreadedApp

REFUSED_PHONE = "13900000000"  # the phone backend answers 409: already bound elsewhere
TEXT_PHONE = "13700000000"  # the phone backend answers 200 with a plain-text body


@dataclass
class Seen:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class UserService:
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = ThreadedApp(self._app())
        self.url = self.server.url

    def last(self, path: str) -> Seen:
        return [s for s in self.seen if s.path == path][-1]

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

    async def _record(self, request: web.Request) -> Any:
        body = await request.read()
        self.seen.append(Seen(request.path, {k.lower(): v for k, v in request.headers.items()},
                              body))
        return json.loads(body)

    async def hook(self, request: web.Request) -> web.Response:
        doc = await self._record(request)
        mode = doc["openid"].split("-", 1)[0]
        if mode == "err500":
            return web.json_response({"error": "database down"}, status=500)
        if mode == "html":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if mode == "obj":
            return web.json_response({"user_id": {"id": 1}})
        if mode == "slow":
            await asyncio.sleep(1.5)
        if mode == "new":
            return web.json_response({"nickname": "not a claim"})
        return web.json_response({"user_id": 42, "roles": ["member", "editor"],
                                  "profile": {"level": 3}, "nickname": "not a claim"})

    async def phone(self, request: web.Request) -> web.Response:
        doc = await self._record(request)
        if doc.get("purePhoneNumber") == REFUSED_PHONE:
            return web.json_response({"error": "phone already bound"}, status=409)
        if doc.get("purePhoneNumber") == TEXT_PHONE:
            return web.Response(text="ok")
        return web.json_response({"user_id": 42, "bound": True, "internal_note": "vip"},
                                 status=201)

    async def profile(self, request: web.Request) -> web.Response:
        doc = await self._record(request)
        return web.json_response({"saved": True, "nickName": doc.get("nickName")})

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/internal/wx-login", self.hook)
        app.router.add_post("/internal/phone", self.phone)
        app.router.add_post("/internal/profile", self.profile)
        return app

    def stop(self) -> None:
        self.server.stop()
