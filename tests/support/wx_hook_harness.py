"""Shared pieces of the login-hook and verified-data black-box tests: one gateway config
(`wxgated run`) with the WeChat stand-in, the recording user service, an echoing
upstream behind jwt_auth and an upstream nobody listens on; plain-HTTP helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.e2e_identity_harness import APPID, JWT_SECRET, SECRET
from tests.support.servers import free_port

HOOK = {"upstream": "users", "path": "/internal/wx-login", "timeout": "300ms",
        "claims": {"user_id": "user_id", "roles": "roles", "level": "profile.level"}}
CLAIM_HEADERS = {"user_id": "X-User-ID", "roles": "X-User-Roles", "level": "X-User-Level"}


def _route(name: str, path: str, wechat: Any, auth: bool = False) -> dict[str, Any]:
    route: dict[str, Any] = {"name": name, "match": {"path": path, "methods": ["POST"]},
                             "wechat": wechat}
    if auth:
        route["filters"] = [{"jwt_auth": {}}]
    return route


def routes() -> list[dict[str, Any]]:
    phone = {"action": "phone", "upstream": "users", "path": "/internal/phone"}
    return [
        _route("login", "/auth/wx/login", {"action": "login", "hook": HOOK}),
        _route("login-down", "/auth/wx/login-down",
               {"action": "login", "hook": {**HOOK, "upstream": "down"}}),
        _route("plain-login", "/auth/wx/plain-login", "login"),
        _route("refresh", "/auth/wx/refresh", "refresh"),
        _route("logout", "/auth/wx/logout", "logout"),
        _route("phone", "/auth/wx/phone",
               {**phone, "respond": ["user_id", "bound"], "store_phone": True}, auth=True),
        _route("phone-full", "/auth/wx/phone-full", phone, auth=True),
        _route("phone-down", "/auth/wx/phone-down", {**phone, "upstream": "down"}, auth=True),
        _route("phone-store", "/auth/wx/phone-store",
               {"action": "phone", "store_phone": True}),
        _route("profile", "/auth/wx/profile",
               {"action": "decrypt", "upstream": "users", "path": "/internal/profile"}),
        {"name": "api", "match": {"path": "/api/*rest"},
         "filters": [{"jwt_auth": {"claim_headers": CLAIM_HEADERS}}], "upstream": "svc"},
    ]


def config(wx_url: str, users_url: str, svc_url: str) -> dict[str, Any]:
    quiet = {"passive_health": {"enabled": False}}  # failing on purpose must not eject
    return {
        "wechat": {"appid": APPID, "secret": SECRET, "api_base": wx_url},
        "jwt": {"keys": [{"kid": "k1", "alg": "HS256", "secret": JWT_SECRET}]},
        "upstreams": {
            "users": {"targets": [{"url": users_url}], **quiet},
            "svc": {"targets": [{"url": svc_url}]},
            "down": {"targets": [{"url": f"http://127.0.0.1:{free_port()}"}], **quiet},
        },
        "routes": routes(),
    }


def call(url: str, body: Any = None, token: str | None = None,
         headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body or text, lower-case headers)."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw, got = r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(), exc.headers
    try:
        doc: Any = json.loads(raw)
    except ValueError:
        doc = raw.decode(errors="replace")
    return status, doc, {k.lower(): v for k, v in got.items()}


def new_code(wx: Any, openid: str, unionid: str | None = None) -> str:
    code = f"code-{openid}-{os.urandom(4).hex()}"
    wx.add_code(code, openid, unionid=unionid)
    return code


def check(tmp: Path, text: str) -> tuple[int, str]:
    path = tmp / "routes.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "wxgated", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def yaml_text(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump({"version": 1, **cfg}, sort_keys=False)


def line_col(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `needle` in `text`."""
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in config")


def running(tmp_path_factory: Any) -> Iterator[tuple[Any, Any, Any]]:
    """A module's gateway with the WeChat stand-in, a user service and a backend:
    yields (gateway, stand-in, user service) and stops them all after."""
    from tests.support.e2e_identity_harness import StandIn, upstream_app
    from tests.support.gateway import GatewayProcess
    from tests.support.servers import ThreadedApp
    from tests.support.user_service import UserService

    wx, users, svc = StandIn(), UserService(), ThreadedApp(upstream_app())
    gw = GatewayProcess(tmp_path_factory.mktemp("gw"),
                        config(wx.url, users.url, svc.url)).start()
    yield gw, wx, users
    gw.stop()
    for server in (wx.server, users, svc):
        server.stop()
    assert "Traceback" not in gw.stderr()
