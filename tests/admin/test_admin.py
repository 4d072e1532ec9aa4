"""The admin listener: metrics, health, introspection; nothing of it on the public port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.support.gateway import metric_value


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


CONFIG = {
    "routes": [
        {"name": "ping", "match": {"path": "/ping", "methods": ["GET"]},
         "respond": {"json": {"message": "pong"}}},
    ],
}


def test_admin_endpoints(gateway: Any) -> None:
    gw = gateway(CONFIG)
    assert get(gw.admin + "/healthz")[0] == 200
    status, body = get(gw.admin + "/readyz")
    assert status == 200 and json.loads(body) == {"ready": True}
    cfg = json.loads(get(gw.admin + "/-/config")[1])
    assert cfg["source"] == str(gw.path) and len(cfg["sha256"]) == 64 and cfg["version"] == 1
    assert cfg["loaded_at"] > 0
    routes = json.loads(get(gw.admin + "/-/routes")[1])
    assert routes == [{"name": "ping", "path": "/ping", "methods": ["GET"], "host": None,
                       "filters": [], "terminal": "respond"}]
    assert json.loads(get(gw.admin + "/-/upstreams")[1]) == {}


def test_metrics_count_requests_by_route_and_status(gateway: Any) -> None:
    gw = gateway(CONFIG)
    for _ in range(3):
        get(gw.url + "/ping")
    get(gw.url + "/missing")
    text = gw.metrics()
    assert metric_value(text, "wxgated_requests_total", route="ping", method="GET",
                        status="200") == 3
    assert metric_value(text, "wxgated_requests_total", route="", method="GET",
                        status="404") == 1
    assert metric_value(text, "wxgated_request_duration_seconds_count", route="ping",
                        method="GET") == 3
    assert "/missing" not in text  # labels carry route names, never raw paths
    assert "wxgated_requests_in_flight" in text


def test_admin_paths_are_not_served_publicly(gateway: Any) -> None:
    gw = gateway(CONFIG)
    for path in ("/metrics", "/healthz", "/readyz", "/-/config", "/-/routes", "/-/upstreams"):
        status, body = get(gw.url + path)
        assert status == 404, path
        assert json.loads(body)["code"] == 404


def test_demo_secrets_are_flagged_at_startup_without_being_logged(gateway: Any) -> None:
    gw = gateway({**CONFIG, "jwt": {"keys": [
        {"kid": "k1", "alg": "HS256", "secret": "change-me-in-production-0123456789"}]}})
    get(gw.url + "/ping")
    gw.stop()
    err = gw.stderr()
    assert "demo JWT_SECRET" in err
    assert "change-me-in-production" not in err + gw.stdout()
