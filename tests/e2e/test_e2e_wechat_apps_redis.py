"""Several mini programs on one real redis-server: sessions, access tokens and their
locks are keyed by appid, each app's session lives its own `session_ttl`, and a token
naming one app cannot use a session of another."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import redis

from tests.support.e2e_identity_harness import upstream_app
from tests.support.gateway import GatewayProcess
from tests.support.servers import ThreadedApp
from tests.support.wx_apps_harness import (
    ENV,
    JWT_SECRET,
    PROD,
    STAGING,
    TwoApps,
    claims_of,
    config,
    login,
)
from tests.support.wx_hook_harness import call


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, redis_url: str
        ) -> Iterator[tuple[GatewayProcess, TwoApps, str]]:
    wx, svc = TwoApps(), ThreadedApp(upstream_app())
    cfg = config(wx.url, svc.url)
    prefix = f"apps-{os.urandom(4).hex()}:"
    cfg["state"] = {"backend": "redis", "redis": {"url": redis_url, "prefix": prefix},
                    "encryption_key": base64.b64encode(os.urandom(32)).decode()}
    gw = GatewayProcess(tmp_path_factory.mktemp("gw"), cfg, env=ENV).start()
    yield gw, wx, prefix
    gw.stop()
    svc.stop()
    wx.server.stop()


def _keys(redis_url: str, pattern: str) -> dict[str, int]:
    """key -> seconds it has left."""
    r = redis.Redis.from_url(redis_url)
    try:
        return {k.decode(): int(r.ttl(k)) for k in r.scan_iter(match=pattern)}
    finally:
        r.close()


def test_sessions_and_tokens_are_keyed_per_appid(env: Any, redis_url: str) -> None:
    gw, wx, prefix = env
    prod = login(gw.url, wx.prod, "o-redis-hal", "/prod/login")
    staging = login(gw.url, wx.staging, "o-redis-hal", "/staging/login")  # same openid
    p_sid, s_sid = claims_of(prod)["sid"], claims_of(staging)["sid"]
    prod_keys = _keys(redis_url, f"{prefix}wx:sess:{PROD}:*")
    staging_keys = _keys(redis_url, f"{prefix}wx:sess:{STAGING}:*")
    assert list(prod_keys) == [f"{prefix}wx:sess:{PROD}:{p_sid}"]
    assert list(staging_keys) == [f"{prefix}wx:sess:{STAGING}:{s_sid}"]
    assert not _keys(redis_url, f"{prefix}wx:sess:{p_sid}")  # no key without the appid
    # each app's session_ttl: prod the 2 h default, staging 10 minutes
    assert 7000 < next(iter(prod_keys.values())) <= 7200
    assert 500 < next(iter(staging_keys.values())) <= 600

    for token, path in ((prod, "/prod/check"), (staging, "/staging/check")):
        assert call(gw.url + path, {"content": "x"}, token=token)[0] == 200
    assert set(_keys(redis_url, f"{prefix}wx:token:*")) == {
        f"{prefix}wx:token:{PROD}", f"{prefix}wx:token:{STAGING}"}

    # logging out of staging leaves prod's session (same user) in place
    assert call(gw.url + "/staging/logout", token=staging)[0] == 200
    assert not _keys(redis_url, f"{prefix}wx:sess:{STAGING}:*")
    assert list(_keys(redis_url, f"{prefix}wx:sess:{PROD}:*")) == [
        f"{prefix}wx:sess:{PROD}:{p_sid}"]
    assert call(gw.url + "/api/x", token=prod, method="GET")[0] == 200


def test_a_token_of_one_app_cannot_use_a_session_of_another(env: Any) -> None:
    gw, wx, _ = env
    prod = login(gw.url, wx.prod, "o-redis-ida", "/prod/login")
    claims = claims_of(prod)
    now = int(time.time())
    # signed with the gateway's own key, naming staging but carrying prod's live sid
    forged = jwt.encode({**claims, "appid": STAGING, "iat": now, "exp": now + 600},
                        JWT_SECRET, algorithm="HS256", headers={"kid": "k1"})
    assert call(gw.url + "/api/x", token=prod, method="GET")[0] == 200
    status, doc, _ = call(gw.url + "/api/x", token=forged, method="GET")
    assert (status, doc["msg"]) == (401, "token revoked"), doc
    status, doc, _ = call(gw.url + "/staging/refresh", token=forged)
    assert (status, doc["msg"]) == (401, "token revoked"), doc
