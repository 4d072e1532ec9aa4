"""Reload follows file contents and `server:` settings, and says what it could not apply.

Real `wxgated run` subprocesses in front of a real aiohttp upstream that echoes what
it was told about the client (X-Real-IP, X-WX-OpenID).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.gateway import GatewayProcess, metric_value
from tests.support.servers import ThreadedApp, free_port, served

RELOADS = "wxgated_config_reloads_total"


def upstream_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"real_ip": request.headers.get("X-Real-IP"),
                                  "openid": request.headers.get("X-WX-OpenID")})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


def config(upstream_url: str, **server: Any) -> dict[str, Any]:
    return {
        "server": server,
        "upstreams": {"svc": {"targets": [{"url": upstream_url}]}},
        "routes": [{"name": "api", "match": {"path": "/api/*rest"}, "upstream": "svc"}],
    }


def call(port: int, path: str = "/api/x", headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body,
                     headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def wait_for(check: Callable[[], bool], within: float = 8.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def reloads(gw: GatewayProcess, result: str) -> float:
    return metric_value(gw.metrics(), RELOADS, result=result)


def reload_with(gw: GatewayProcess, cfg: dict[str, Any], result: str) -> None:
    """Write `cfg` and wait until the reload is counted under `result`."""
    before = reloads(gw, result)
    gw.write(cfg)
    wait_for(lambda: reloads(gw, result) > before, what=f"a {result} reload")


# --- a JWT key rotated in place (new key pair written to the same pem_file path) ---


def write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pem)
    os.replace(tmp, path)  # how a deploy tool or cert manager swaps it
    return key


def token(key: ec.EllipticCurvePrivateKey, sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iss": "wxgated", "iat": now, "exp": now + 600}, key,
                      algorithm="ES256", headers={"kid": "k1"})


def authed(gw: GatewayProcess, tok: str) -> tuple[int, dict[str, Any]]:
    return call(gw.port, "/me", {"Authorization": f"Bearer {tok}"})


def test_a_rotated_pem_file_takes_effect_on_reload(gateway: Any, upstream: ThreadedApp,
                                                   tmp_path: Path) -> None:
    pem = tmp_path / "jwt.pem"
    old_key = write_key(pem)
    cfg = config(upstream.url)
    cfg["jwt"] = {"keys": [{"kid": "k1", "alg": "ES256", "pem_file": str(pem)}]}
    cfg["routes"].append({"name": "me", "match": {"path": "/me"}, "upstream": "svc",
                          "filters": [{"jwt_auth": {"check_session": False}}]})
    gw = gateway(cfg)
    old = token(old_key, "o-old")
    assert authed(gw, old) == (200, {"real_ip": "127.0.0.1", "openid": "o-old"})

    new_key = write_key(pem)  # the watcher sees the referenced file change
    new = token(new_key, "o-new")
    wait_for(lambda: authed(gw, new)[0] == 200, what="the new key to verify")
    assert authed(gw, new)[1]["openid"] == "o-new"
    assert authed(gw, old)[0] == 401  # the rotated-out key no longer verifies
    assert reloads(gw, "success") >= 1 and reloads(gw, "partial") == 0

    newer_key = write_key(pem)  # and on SIGHUP (no watcher race: wait for the answer)
    gw.signal(signal.SIGHUP)
    newer = token(newer_key, "o-newer")
    wait_for(lambda: authed(gw, newer)[0] == 200, what="the newer key to verify")
    assert authed(gw, new)[0] == 401


# --- server settings applied live ---


def test_trusted_proxies_and_limits_apply_on_reload(gateway: Any,
                                                    upstream: ThreadedApp) -> None:
    gw = gateway(config(upstream.url))
    xff = {"X-Forwarded-For": "203.0.113.9"}
    assert call(gw.port, headers=xff) == (200, {"real_ip": "127.0.0.1", "openid": None})
    assert call(gw.port, body=b"x" * 4096)[0] == 200

    reload_with(gw, config(upstream.url, trusted_proxies=["127.0.0.1/32"],
                           limits={"max_body": "1KiB"}), "success")
    assert call(gw.port, headers=xff)[1]["real_ip"] == "203.0.113.9"
    wait_for(lambda: any(d.get("client_ip") == "203.0.113.9" for d in gw.log_lines()),
             what="the access log to name the forwarded client")
    assert call(gw.port, body=b"x" * 4096)[0] == 413
    assert reloads(gw, "partial") == 0

    reload_with(gw, config(upstream.url), "success")  # and back
    assert call(gw.port, headers=xff)[1]["real_ip"] == "127.0.0.1"


# --- settings that need a restart ---


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_new_listen_port_is_reported_not_claimed(gateway: Any,
                                                   upstream: ThreadedApp) -> None:
    gw = gateway(config(upstream.url))
    other = free_port()
    reload_with(gw, config(upstream.url, listen=f"127.0.0.1:{other}",
                           trusted_proxies=["127.0.0.1/32"]), "partial")
    events = [d for d in gw.log_lines() if d.get("restart_needed")]
    assert events and events[-1]["restart_needed"] == ["server.listen"]
    assert events[-1]["level"] == "warning" and "server.listen" in events[-1]["msg"]
    assert not [d for d in gw.log_lines() if d.get("msg") == "config reloaded"]
    assert reloads(gw, "success") == 0
    # the old port keeps serving, with what could be applied (trusted_proxies)
    got = call(gw.port, headers={"X-Forwarded-For": "203.0.113.9"})
    assert got == (200, {"real_ip": "203.0.113.9", "openid": None})
    assert not listening(other)

    # a later, unrelated change: the listen address still waits for the restart
    reload_with(gw, config(upstream.url, listen=f"127.0.0.1:{other}"), "partial")
    assert reloads(gw, "success") == 0
    # back to the address it runs on: a full success again
    reload_with(gw, config(upstream.url), "success")


def test_with_workers_the_supervisor_reports_the_restart(gateway: Any,
                                                         upstream: ThreadedApp) -> None:
    gw = gateway(config(upstream.url, workers=2))
    reload_with(gw, config(upstream.url, workers=3, trusted_proxies=["127.0.0.1/32"]),
                "partial")
    events = [d for d in gw.log_lines() if d.get("restart_needed")]
    assert events and events[-1]["restart_needed"] == ["server.workers"]
    # the workers applied the rest
    wait_for(lambda: call(gw.port, headers={"X-Forwarded-For": "203.0.113.9"})[1]
             .get("real_ip") == "203.0.113.9", what="both workers to trust the proxy")
    for _ in range(10):
        assert call(gw.port, headers={"X-Forwarded-For": "203.0.113.9"})[1]["real_ip"] \
            == "203.0.113.9"


def test_file_contents_are_part_of_a_registry_spec(tmp_path: Path) -> None:
    from wxgated.config.spec import identity

    ca = tmp_path / "ca.pem"
    ca.write_text("one")
    fragment = {"tls": {"verify": True, "ca_file": str(ca)}}
    first = identity(fragment)
    assert identity(fragment) == first
    ca.write_text("two")
    assert identity(fragment) != first
    ca.unlink()
    assert identity(fragment) != first and "unreadable" in str(identity(fragment))
