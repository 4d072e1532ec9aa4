"""A request written on an idle connection is answered like one that waited for a
connection: filter refusals, 404 and 405, the access log and the metrics."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.e2e_backend import send
from tests.support.e2e_identity_harness import Client, StandIn, header_values
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.proxy_harness import RL, warm
from tests.support.servers import ThreadedApp

# --- 5. filters behave alike on an idle connection and on a new one ---------------------


async def test_rate_limit_and_jwt_auth_answers_match_the_coroutine_path(
        gw: GatewayProcess, standin: StandIn) -> None:
    await warm(gw, "/fp/warm")
    async with aiohttp.ClientSession() as session:
        client = Client(session)
        token, _ = await client.login(gw.url, standin.wx, "o-fast", unionid="u-fast")
        seen: dict[str, list[tuple[int, dict[str, str | None]]]] = {}
        for method, body in (("GET", None), ("POST", {"a": 1})):
            bucket = {"X-Bucket": f"b-{method}"}
            if body is not None:  # a body that waits for 100 Continue: through forward
                bucket["Expect"] = "100-continue"
            steps = []
            for tok in (None, token, token):
                status, doc, headers = await client.call(method, gw.url + "/guard/who", body,
                                                         token=tok, headers=bucket)
                steps.append((status, {k: headers.get(k) for k in RL}))
                if status == 200:
                    assert header_values(doc, "x-wx-openid") == ["o-fast"]
                    assert header_values(doc, "x-wx-unionid") == ["u-fast"]
                    assert doc["method"] == method and doc["path"] == "/who"
                else:
                    assert doc["code"] == status and doc["trace_id"]
            seen[method] = steps
    get_steps = seen["GET"]
    assert [s for s, _ in get_steps] == [401, 200, 429]
    assert get_steps[0][1] == {"ratelimit-limit": "2", "ratelimit-remaining": "1",
                               "retry-after": None,
                               "www-authenticate": 'Bearer error="invalid_token"'}
    assert get_steps[1][1] == {"ratelimit-limit": "2", "ratelimit-remaining": "0",
                               "retry-after": None, "www-authenticate": None}
    assert get_steps[2][1] == {"ratelimit-limit": "2", "ratelimit-remaining": "0",
                               "retry-after": "5", "www-authenticate": None}
    assert seen["POST"] == get_steps


# --- accounting ------------------------------------------------------------------------


async def test_fast_requests_are_logged_and_counted_like_any_other(
        gw: GatewayProcess, svc: ThreadedApp) -> None:
    await warm(gw, "/fp/warm")
    def requests_ok() -> float:
        return metric_value(gw.metrics(), "wxgated_requests_total", route="fp", method="GET",
                            status="200")

    def upstream_ok() -> float:
        return metric_value(gw.metrics(), "wxgated_upstream_requests_total", upstream="svc",
                            target=svc.url, status="200")

    before = (requests_ok(), upstream_ok())
    async with aiohttp.ClientSession() as s:
        for i in range(3):
            status, _, _ = await send(s, gw.url + "/fp/logged", headers={
                "X-Trace-ID": f"fast-log-{i}"})
            assert status == 200
    await asyncio.sleep(0.2)
    lines = [d for d in gw.log_lines() if str(d.get("trace_id")).startswith("fast-log-")]
    assert len(lines) == 3
    for line in lines:
        assert (line["route"], line["method"], line["path"], line["status"]) == (
            "fp", "GET", "/fp/logged", 200)
        assert line["upstream"] == "svc" and line["target"] == svc.url
        assert line["duration_ms"] >= line["upstream_ms"] >= 0
        assert line["bytes_in"] > 0 and line["bytes_out"] > 0
    assert (requests_ok(), upstream_ok()) == (before[0] + 3, before[1] + 3)
    assert metric_value(gw.metrics(), "wxgated_requests_in_flight") == 0


# --- 7. 404 and 405 from the fast dispatcher ---------------------------------------------


async def test_404_and_405_envelopes_match_the_coroutine_path(gw: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as s:
        for method, data in (("GET", None), ("DELETE", None), ("POST", b"{}")):
            status, headers, doc = await send(s, gw.url + "/nowhere", method, data=data)
            assert status == 404 and headers["Content-Type"].startswith("application/json")
            assert doc == {"code": 404, "msg": "not found", "data": None,
                           "trace_id": headers["X-Trace-ID"]}
        for method, data in (("DELETE", None), ("POST", b"{}"), ("PUT", b"{}")):
            status, headers, doc = await send(s, gw.url + "/only-get", method, data=data)
            assert status == 405 and "GET" in headers["Allow"].split(", ")
            assert doc == {"code": 405, "msg": "method not allowed", "data": None,
                           "trace_id": headers["X-Trace-ID"]}
        async with s.head(gw.url + "/nowhere") as r:
            assert r.status == 404 and await r.read() == b""
        status, _, doc = await send(s, gw.url + "/only-get")
        assert status == 200 and doc["path"] == "/only-get"
