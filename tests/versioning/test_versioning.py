"""API version extraction from path, header and Accept; Deprecation/Sunset headers."""

from __future__ import annotations

import pytest

from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.filters import FILTERS
from wxgated.gateway.engine import chain
from wxgated.http.message import Body, HTTPError, Request, Response
from wxgated.registry import Registry
from wxgated.terminals import TERMINALS
from wxgated.versioning import VersionSources, extract_version, normalize, request_version


def request(path: str = "/users/1", **headers: str) -> Request:
    hdrs = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Request("GET", path, "", hdrs, Body.of(b""))


ALL = VersionSources.parse({})


def test_version_from_the_path_is_stripped_before_routing() -> None:
    req = request("/v2/users/1")
    assert extract_version(req, ALL) == "2"
    assert req.path == "/users/1"


def test_path_prefix_puts_the_version_after_it() -> None:
    src = VersionSources.parse({"path_prefix": "/api"})
    req = request("/api/v3/orders")
    assert extract_version(req, src) == "3" and req.path == "/api/orders"
    req = request("/apix/v3/orders")
    assert extract_version(req, src) is None and req.path == "/apix/v3/orders"


@pytest.mark.parametrize("path, version, rest", [
    ("/v1", "1", "/"), ("/v1/", "1", "/"), ("/V1.1/x", "1.1", "/x"),
    ("/video/1", None, "/video/1"), ("/v/1", None, "/v/1"), ("/users", None, "/users"),
])
def test_only_real_version_segments_count(path: str, version: str | None, rest: str) -> None:
    req = request(path)
    assert extract_version(req, ALL) == version and req.path == rest


def test_strip_can_be_turned_off() -> None:
    req = request("/v2/users")
    assert extract_version(req, VersionSources.parse({"strip": False})) == "2"
    assert req.path == "/v2/users"


def test_version_from_the_header() -> None:
    assert extract_version(request(x_api_version="v3"), ALL) == "3"
    assert extract_version(request(x_api_version="2"), ALL) == "2"
    assert extract_version(request(x_api_version="banana"), ALL) is None
    custom = VersionSources.parse({"header": "Api-Version"})
    assert extract_version(request(api_version="4"), custom) == "4"


def test_version_from_the_accept_vendor_type() -> None:
    accept = "text/html, application/vnd.wxshop.v2+json; q=0.9"
    assert extract_version(request(accept=accept), ALL) == "2"
    pinned = VersionSources.parse({"vendor": "wxshop"})
    assert extract_version(request(accept=accept), pinned) == "2"
    other = VersionSources.parse({"vendor": "other"})
    assert extract_version(request(accept=accept), other) is None
    assert extract_version(request(accept="application/json"), ALL) is None


def test_first_source_in_order_wins_but_the_path_is_always_stripped() -> None:
    src = VersionSources.parse({"sources": ["header", "path"]})
    req = request("/v1/users", x_api_version="2")
    assert extract_version(req, src) == "2" and req.path == "/users"
    req = request("/v1/users", x_api_version="2")
    assert extract_version(req, ALL) == "1"


def test_only_configured_sources_are_read() -> None:
    src = VersionSources.parse({"sources": ["accept"]})
    req = request("/v1/users", x_api_version="2")
    assert extract_version(req, src) is None and req.path == "/v1/users"


def test_default_fills_in_and_is_kept_on_the_request() -> None:
    src = VersionSources.parse({"default": "v1"})
    req = request("/users")
    assert request_version(req, src) == "1" and req.ctx["version"] == "1"


def test_normalize() -> None:
    assert [normalize(v) for v in ("v2", "V2", "2", 2, "2.1", "x2", "")] == \
        ["2", "2", "2", "2", "2.1", None, None]
    with pytest.raises(ValueError):
        VersionSources.parse({"default": "latest"})
    with pytest.raises(ValueError):
        VersionSources.parse({"sources": ["query"]})


def _deprecated(cfg: dict, inner=None):
    ctx = CompileContext(config={}, registry=Registry())
    inner = inner or TERMINALS["respond"].build({"json": {}}, {}, ctx)
    return chain([FILTERS["deprecation"](cfg, ctx)], inner)


async def test_deprecation_and_sunset_headers() -> None:
    handler = _deprecated({"deprecated": "2026-01-01", "sunset": "2026-07-01T12:00:00Z",
                           "link": "https://dev.example.com/v2"})
    resp = await handler(request())
    assert resp.header(b"deprecation") == b"@1767225600"
    assert resp.header(b"sunset") == b"Wed, 01 Jul 2026 12:00:00 GMT"
    assert resp.header(b"link") == b'<https://dev.example.com/v2>; rel="deprecation"'


async def test_deprecation_headers_are_on_gateway_errors_too() -> None:
    async def fail(req: Request) -> Response:
        raise HTTPError(429, "slow down")

    resp = await _deprecated({"sunset": "2026-07-01"}, fail)(request())
    assert resp.status == 429
    assert (b"sunset", b"Wed, 01 Jul 2026 00:00:00 GMT") in resp.headers


@pytest.mark.parametrize("cfg", [{"sunset": "next year"}, {}])
def test_bad_deprecation_config(cfg: dict) -> None:
    with pytest.raises(SemanticError):
        _deprecated(cfg)
