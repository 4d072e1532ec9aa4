"""`match.version` routing from the path, a header, or the Accept vendor type."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), {k.lower(): v for k, v in exc.headers.items()}


CONFIG = {
    "versioning": {"sources": ["path", "header", "accept"], "default": 1, "vendor": "wxgated"},
    "routes": [
        {"name": "users-v1", "match": {"path": "/users", "version": 1, "methods": ["GET"]},
         "filters": [{"deprecation": {"deprecated": "2026-01-01", "sunset": "2027-01-01",
                                      "link": "https://example.com/migrate"}}],
         "respond": {"json": {"v": 1}}},
        {"name": "users-v2", "match": {"path": "/users", "version": "v2", "methods": ["GET"]},
         "respond": {"json": {"v": 2}}},
        {"name": "ping", "match": {"path": "/ping"}, "respond": {"json": {"pong": True}}},
    ],
}


def test_version_from_each_source_and_the_default(gateway: Any) -> None:
    gw = gateway(CONFIG)
    assert get(gw.url + "/v2/users")[1] == {"v": 2}
    assert get(gw.url + "/v1/users")[1] == {"v": 1}
    assert get(gw.url + "/users", {"X-API-Version": "2"})[1] == {"v": 2}
    assert get(gw.url + "/users", {"Accept": "application/vnd.wxgated.v2+json"})[1] == {"v": 2}
    assert get(gw.url + "/users")[1] == {"v": 1}  # no version named: the default
    assert get(gw.url + "/v2/ping")[1] == {"pong": True}  # unversioned routes serve every version
    status, body, _ = get(gw.url + "/v3/users")
    assert status == 404 and body["code"] == 404


def test_deprecated_version_announces_its_sunset(gateway: Any) -> None:
    gw = gateway(CONFIG)
    _, _, headers = get(gw.url + "/v1/users")
    assert headers["deprecation"] == "@1767225600"  # RFC 9745: a structured date
    assert headers["sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
    assert 'rel="deprecation"' in headers["link"]
    _, _, headers = get(gw.url + "/v2/users")
    assert "deprecation" not in headers
