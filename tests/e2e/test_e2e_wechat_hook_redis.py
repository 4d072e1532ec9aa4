"""Login-hook claims and a stored phone with sessions in a real Redis, through two
`wxgated run` processes: what one gateway stored, the other serves (refresh keeps the
hook's claims, jwt_auth sends X-WX-Phone), and the number is not in Redis in clear."""

from __future__ import annotations

import os
from typing import Any

import jwt
import redis

from tests.support.e2e_identity_harness import JWT_SECRET, StandIn, upstream_app
from tests.support.servers import ThreadedApp
from tests.support.user_service import UserService
from tests.support.wx_hook_harness import call, config, new_code


def _headers(doc: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in doc["headers"] if k == name]


def test_claims_and_phone_are_shared_through_redis(gateway: Any, redis_url: str) -> None:
    wx, users, svc = StandIn(), UserService(), ThreadedApp(upstream_app())
    prefix = f"e2e-hook-{os.urandom(4).hex()}:"
    try:
        cfg = config(wx.url, users.url, svc.url)
        cfg["state"] = {"backend": "redis", "redis": {"url": redis_url, "prefix": prefix},
                        "encryption_key": os.urandom(32).hex()}
        a, b = gateway(cfg), gateway(cfg)
        status, doc, _ = call(a.url + "/auth/wx/login", {"code": new_code(wx.wx, "ok-rita")})
        assert status == 200, doc
        token = doc["data"]["token"]
        code = "phone-redis"
        wx.wx.add_phone_code(code, phone="13800000009", openid="ok-rita")
        status, doc, _ = call(a.url + "/auth/wx/phone", {"code": code}, token)
        assert status == 201, doc
        status, doc, _ = call(b.url + "/auth/wx/refresh", token=token)  # the other process
        assert status == 200, doc
        claims = jwt.decode(doc["data"]["token"], JWT_SECRET, algorithms=["HS256"],
                            issuer="wxgated")
        assert (claims["user_id"], claims["roles"]) == (42, ["member", "editor"])
        status, echo, _ = call(b.url + "/api/me", token=doc["data"]["token"], method="GET")
        assert status == 200
        assert _headers(echo, "x-wx-phone") == ["+8613800000009"]
        assert _headers(echo, "x-user-id") == ["42"]
        direct = redis.Redis.from_url(redis_url)
        try:
            stored = [direct.get(k) for k in direct.scan_iter(match=f"{prefix}wx:sess:*")]
        finally:
            direct.close()
        assert len(stored) == 1 and b"ok-rita" in stored[0]
        assert b"13800000009" not in stored[0]
    finally:
        for server in (wx.server, users, svc):
            server.stop()
