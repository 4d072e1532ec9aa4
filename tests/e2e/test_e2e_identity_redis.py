"""Issue 3 black-box: the access_token is fetched once per burst, in one process and
across two processes sharing one real Redis; Redis sessions survive a restart, with the
session_key encrypted at rest."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import redis

from tests.support.e2e_identity_harness import (
    HS_KEYS,
    JWT_SECRET,
    SECRET,
    Client,
    StandIn,
    assert_no_secrets,
    base_config,
    header_values,
    phone_burst,
    upstream_app,
)
from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedApp, served


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


# -- access_token bursts: one fetch, per process and across processes -------------------


async def test_fifty_concurrent_phone_calls_fetch_the_token_once(
        gateway: Any, upstream: ThreadedApp, client: Client) -> None:
    fresh = StandIn()  # a gateway and a WeChat that never saw a token
    try:
        g = gateway(base_config(fresh.url, upstream.url, HS_KEYS))
        token, _ = await client.login(g.url, fresh.wx, "o-burst")
        fresh.wx.latency = 0.2  # the fetch is slow: every caller arrives while it runs
        await phone_burst(client, [g.url], token, fresh.wx)
        assert fresh.wx.calls["stable_token"] + fresh.wx.calls["token"] == 1
        assert fresh.wx.calls["getuserphonenumber"] == 50
    finally:
        fresh.server.stop()


async def test_admin_access_token_when_wechat_fails(gateway: Any, upstream: ThreadedApp,
                                                    client: Client) -> None:
    fresh = StandIn()
    try:
        g = gateway(base_config(fresh.url, upstream.url, HS_KEYS))
        fresh.wx.fail_next(100)  # system busy, again and again
        status, doc, headers = await client.call("GET", g.admin + "/-/wechat/access_token")
        assert (status, doc["errcode"]) == (503, -1) and headers["Retry-After"]
        fresh.wx.fail_next(0)  # WeChat is back: the next caller gets a token
        status, doc, _ = await client.call("GET", g.admin + "/-/wechat/access_token")
        assert status == 200 and fresh.wx.token_ok(doc["access_token"])
        await asyncio.sleep(0.2)
        assert "Traceback" not in g.stderr()
        assert_no_secrets([SECRET], [g.stdout(), g.stderr()], client.seen)
    finally:
        fresh.server.stop()


# -- two gateways, one Redis ------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_standin() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.server.stop()


@pytest.fixture(scope="module")
def redis_cfg(redis_url: str, redis_standin: StandIn, upstream: ThreadedApp) -> dict[str, Any]:
    cfg = base_config(redis_standin.url, upstream.url, HS_KEYS)
    cfg["state"] = {"backend": "redis",
                    "redis": {"url": redis_url, "prefix": f"e2e-{os.urandom(4).hex()}:"},
                    "encryption_key": os.urandom(32).hex()}
    return cfg


@pytest.fixture(scope="module")
def pair(redis_cfg: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    a = GatewayProcess(tmp_path_factory.mktemp("gwa"), redis_cfg)
    b = GatewayProcess(tmp_path_factory.mktemp("gwb"), redis_cfg)
    a.start(wait=False)
    b.start(wait=False)
    try:
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()


async def test_two_gateways_on_one_redis_fetch_the_token_once(
        pair: tuple[GatewayProcess, GatewayProcess], redis_standin: StandIn,
        client: Client) -> None:
    a, b = pair
    wx = redis_standin.wx
    token, _ = await client.login(a.url, wx, "o-pair")  # a session made on A works on B
    wx.latency = 0.2
    try:
        await phone_burst(client, [a.url, b.url], token, wx)
    finally:
        wx.latency = 0.0
    assert wx.calls["stable_token"] + wx.calls["token"] == 1
    assert wx.calls["getuserphonenumber"] == 50


def stored_value(r: redis.Redis, key: bytes) -> bytes:
    kind = r.type(key)
    if kind == b"string":
        return r.get(key) or b""
    if kind == b"hash":
        return b"\n".join(k + b"=" + v for k, v in r.hgetall(key).items())
    return repr(r.dump(key)).encode()


async def test_redis_sessions_survive_a_restart(pair: tuple[GatewayProcess, GatewayProcess],
                                                redis_standin: StandIn, redis_cfg: dict[str, Any],
                                                client: Client) -> None:
    a, b = pair
    token, key = await client.login(a.url, redis_standin.wx, "o-restart", unionid="u-restart")
    # the session_key sits in Redis encrypted, never in clear
    r = redis.Redis.from_url(redis_cfg["state"]["redis"]["url"])
    try:
        prefix = redis_cfg["state"]["redis"]["prefix"]
        stored = [stored_value(r, k) for k in r.scan_iter(match=prefix + "*")]
        sid = jwt.decode(token, options={"verify_signature": False})["sid"]
        # the single-app form's session key has no appid: an upgrade logs nobody out
        assert r.exists(f"{prefix}wx:sess:{sid}")
    finally:
        r.close()
    assert [v for v in stored if b"o-restart" in v], "no session in Redis"
    raw_key = base64.b64decode(key)
    assert not [v for v in stored if key.encode() in v or raw_key in v]
    outputs = [a.stdout(), a.stderr()]  # start() truncates the logs: keep them

    assert a.stop() == 0
    a.start()
    status, doc, _ = await client.call("GET", a.url + "/api/after-restart", token=token)
    assert status == 200
    assert header_values(doc, "x-wx-openid") == ["o-restart"]
    assert header_values(doc, "x-wx-unionid") == ["u-restart"]
    # logout on B kills the token on A at once
    assert (await client.call("POST", b.url + "/auth/wx/logout", token=token))[0] == 200
    status, doc, _ = await client.call("GET", a.url + "/api/after-restart", token=token)
    assert (status, doc["msg"]) == (401, "token revoked")
    await asyncio.sleep(0.3)
    outputs += [a.stdout(), a.stderr(), b.stdout(), b.stderr()]
    assert_no_secrets([SECRET, key, JWT_SECRET, redis_cfg["state"]["encryption_key"]],
                      outputs, client.seen)
