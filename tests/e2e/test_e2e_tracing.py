"""observe.tracing black-box: a `wxgated run` subprocess with a real upstream and the
WeChat stand-in exports its spans to a local OTLP/HTTP receiver, which decodes them
with the OTLP protobuf classes. What an operator relies on: the trace id is the one in
the access log (the caller's X-Trace-Id, or its hash), the upstream's traceparent names
the span of the try that called it, parents link up, and `sample: 0` sends nothing."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.e2e_identity_harness import HS_KEYS, StandIn, base_config
from tests.support.gateway import GatewayProcess
from tests.support.otlp_receiver import Receiver
from tests.support.servers import ThreadedApp, free_port

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
ENV = {"OTEL_BSP_SCHEDULE_DELAY": "100", "COLLECTOR_TOKEN": "s3cr3t-collector-token"}


def traced_upstream() -> web.Application:
    """Echoes the traceparent it got; /flaky/* answers 503 to the first try of a trace."""
    failed: set[str] = set()

    async def echo(request: web.Request) -> web.Response:
        tp = request.headers.get("traceparent", "")
        tid = request.headers.get("x-trace-id", "")
        if request.path.startswith("/flaky/") and tid not in failed:
            failed.add(tid)
            return web.json_response({"traceparent": tp}, status=503)
        return web.json_response({"traceparent": tp, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    app = ThreadedApp(traced_upstream())
    yield app
    app.stop()


def config(standin: StandIn, upstream: ThreadedApp, receiver: Receiver,
           sample: float) -> dict[str, Any]:
    cfg = base_config(standin.url, upstream.url, HS_KEYS)
    cfg["upstreams"]["flaky"] = {"targets": [{"url": upstream.url}],
                                 "retries": {"attempts": 2, "on": [503]}}
    cfg["routes"].append({"name": "flaky", "match": {"path": "/flaky/*rest"},
                          "upstream": "flaky"})
    cfg["observe"] = {"tracing": {"otlp": receiver.url, "sample": sample,
                                  "service_name": "gw-under-test",
                                  "headers": {"authorization": "Bearer ${COLLECTOR_TOKEN}"}}}
    return cfg


@pytest.fixture(scope="module")
def gw(standin: StandIn, upstream: ThreadedApp, receiver: Receiver,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("gw"), config(standin, upstream, receiver, 1.0),
                       ENV)
    g.start()
    yield g
    g.stop()


def get(url: str, headers: dict[str, str], method: str = "GET",
        body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def log_line(gw: GatewayProcess, trace_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [x for x in gw.log_lines() if x.get("trace_id") == trace_id and "status" in x]
        if lines:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {trace_id}")


def by_kind(spans: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return sorted((s for s in spans if s["kind"] == kind), key=lambda s: s["start"])


def test_request_and_upstream_try_spans_join_the_callers_trace(
        gw: GatewayProcess, receiver: Receiver) -> None:
    # a GET without a body: answered from the upstream connection's callback
    status, doc = get(gw.url + "/pub/items?x=1", {
        "X-Trace-Id": TRACE, "traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"})
    assert status == 200
    spans = receiver.of_trace(TRACE, 2)
    server, client = by_kind(spans, "SPAN_KIND_SERVER"), by_kind(spans, "SPAN_KIND_CLIENT")
    assert len(server) == 1 and len(client) == 1, spans
    s, c = server[0], client[0]
    assert log_line(gw, TRACE)["trace_id"] == TRACE == s["trace_id"] == c["trace_id"]
    assert s["name"] == "GET pub" and s["parent"] == CALLER_SPAN
    assert s["attrs"]["http.route"] == "pub"
    assert s["attrs"]["http.response.status_code"] == 200
    assert s["attrs"]["http.target"] == "/pub/items"
    assert s["attrs"]["client.address"] == "127.0.0.1"
    assert s["resource"]["service.name"] == "gw-under-test"
    # the try is a child of the request, and the upstream saw the try's own span id
    assert c["name"] == "upstream svc" and c["parent"] == s["span_id"]
    assert doc["traceparent"] == f"00-{TRACE}-{c['span_id']}-01"
    assert c["attrs"]["wxgated.upstream"] == "svc"
    assert c["attrs"]["server.address"] == gw.config["upstreams"]["svc"]["targets"][0]["url"]
    assert c["attrs"]["wxgated.attempt"] == 1
    assert c["attrs"]["http.response.status_code"] == 200
    assert s["start"] <= c["start"] <= c["end"] <= s["end"]
    # the collector got the configured headers (the ${ENV} value, interpolated)
    assert receiver.posts[-1].get("authorization") == "Bearer s3cr3t-collector-token"


def test_a_non_hex_trace_id_is_hashed_as_for_the_upstream(
        gw: GatewayProcess, receiver: Receiver) -> None:
    status, doc = get(gw.url + "/pub/me", {"X-Trace-Id": "order-42"})
    assert status == 200, doc
    want = hashlib.md5(b"order-42").hexdigest()
    spans = receiver.of_trace(want, 2)
    server = by_kind(spans, "SPAN_KIND_SERVER")
    assert [s["name"] for s in server] == ["GET pub"]
    assert server[0]["parent"] == ""  # no traceparent came in: a root span
    assert server[0]["attrs"]["wxgated.trace_id"] == "order-42"
    assert doc["traceparent"].split("-")[1] == want
    assert log_line(gw, "order-42")["status"] == 200


def test_each_retry_is_its_own_span_with_its_own_traceparent(
        gw: GatewayProcess, receiver: Receiver) -> None:
    tid = os.urandom(16).hex()
    status, doc = get(gw.url + "/flaky/x", {"X-Trace-Id": tid})
    assert status == 200
    spans = receiver.of_trace(tid, 3)
    server, tries = by_kind(spans, "SPAN_KIND_SERVER"), by_kind(spans, "SPAN_KIND_CLIENT")
    assert len(server) == 1 and len(tries) == 2, spans
    assert [t["attrs"]["wxgated.attempt"] for t in tries] == [1, 2]
    assert [t["attrs"]["http.response.status_code"] for t in tries] == [503, 200]
    assert tries[0]["status"] == 2  # STATUS_CODE_ERROR: the 503 try failed
    assert {t["parent"] for t in tries} == {server[0]["span_id"]}
    assert tries[0]["span_id"] != tries[1]["span_id"]
    assert doc["traceparent"] == f"00-{tid}-{tries[1]['span_id']}-01"


def test_wechat_calls_are_client_spans_of_the_login(
        gw: GatewayProcess, standin: StandIn, receiver: Receiver) -> None:
    tid = os.urandom(16).hex()
    standin.wx.add_code("code-trace-1", "o-trace-login")
    status, doc = get(gw.url + "/auth/wx/login", {"X-Trace-Id": tid}, "POST",
                      json.dumps({"code": "code-trace-1"}).encode())
    assert status == 200, doc
    spans = receiver.of_trace(tid, 2)
    server = by_kind(spans, "SPAN_KIND_SERVER")
    wx = [s for s in spans if s["name"] == "wechat jscode2session"]
    assert [s["name"] for s in server] == ["POST login"]
    assert len(wx) == 1 and wx[0]["kind"] == "SPAN_KIND_CLIENT"
    assert wx[0]["parent"] == server[0]["span_id"]
    assert wx[0]["attrs"]["wechat.errcode"] == 0
    # the AppSecret rides in WeChat's query string: no span may carry it
    from tests.support.e2e_identity_harness import SECRET
    assert SECRET not in json.dumps(spans)


def test_a_callers_unsampled_traceparent_is_honoured(
        gw: GatewayProcess, receiver: Receiver) -> None:
    tid = os.urandom(16).hex()
    status, doc = get(gw.url + "/pub/a", {"traceparent": f"00-{tid}-{CALLER_SPAN}-00"})
    assert status == 200
    assert doc["traceparent"].startswith(f"00-{tid}-") and doc["traceparent"].endswith("-00")
    time.sleep(0.6)  # several export intervals
    assert receiver.of_trace(tid, 1, timeout=0.1) == []


def test_sample_zero_exports_nothing(standin: StandIn, upstream: ThreadedApp,
                                     receiver: Receiver, gateway: Any) -> None:
    g = gateway(config(standin, upstream, receiver, 0), ENV)
    before = len(receiver.posts)
    tids = [os.urandom(16).hex() for _ in range(5)]
    for tid in tids:
        status, doc = get(g.url + "/pub/z", {"X-Trace-Id": tid})
        assert status == 200
        assert doc["traceparent"].endswith("-00")  # the upstream learns it is not sampled
    assert g.stop() == 0  # a clean stop flushes whatever was queued
    assert len(receiver.posts) == before
    assert all(receiver.of_trace(t, 1, timeout=0.05) == [] for t in tids)


def test_a_collector_that_is_down_costs_no_request_and_no_slow_stop(
        standin: StandIn, upstream: ThreadedApp, receiver: Receiver, gateway: Any) -> None:
    cfg = config(standin, upstream, receiver, 1.0)
    cfg["observe"]["tracing"]["otlp"] = f"http://127.0.0.1:{free_port()}/v1/traces"  # closed
    g = gateway(cfg, {**ENV, "OTEL_BSP_SCHEDULE_DELAY": "50"})
    for _ in range(20):
        assert get(g.url + "/pub/down", {})[0] == 200
    time.sleep(0.5)  # exports have been failing meanwhile
    assert get(g.url + "/pub/down", {})[0] == 200
    get(g.url + "/pub/down", {})  # queued when the stop comes
    started = time.monotonic()
    assert g.stop() == 0
    # the exporter would retry for its 10 s timeout; the stop waits 2 s for it at most
    assert time.monotonic() - started < 6


def test_sampling_is_decided_on_the_trace_id(standin: StandIn, upstream: ThreadedApp,
                                             receiver: Receiver, gateway: Any) -> None:
    """sample: 0.5 keeps exactly the traces whose id's low 64 bits are below 2**63 (as
    OpenTelemetry's TraceIdRatioBased), so every worker and gateway agrees on one trace."""
    g = gateway(config(standin, upstream, receiver, 0.5), ENV)
    kept = [os.urandom(8).hex() + "0" + os.urandom(8).hex()[1:] for _ in range(3)]
    dropped = [os.urandom(8).hex() + "f" + os.urandom(8).hex()[1:] for _ in range(3)]
    for tid in kept + dropped:
        status, doc = get(g.url + "/pub/s", {"X-Trace-Id": tid})
        assert status == 200
        assert doc["traceparent"].endswith("-01" if tid in kept else "-00")
    for tid in kept:
        assert len(receiver.of_trace(tid, 2)) == 2
    assert g.stop() == 0
    assert all(receiver.of_trace(t, 1, timeout=0.05) == [] for t in dropped)


def reloaded(g: GatewayProcess, cfg: dict[str, Any]) -> None:
    """Write `cfg`, SIGHUP, and wait until the gateway counts one more good reload."""
    import signal

    from tests.support.gateway import metric_value

    def count() -> float:
        return metric_value(g.metrics(), "wxgated_config_reloads_total", result="success")

    before = count()
    g.write(cfg)
    g.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while count() <= before:
        assert time.monotonic() < deadline, "no reload"
        time.sleep(0.05)


def test_a_reload_turns_tracing_on_and_off(standin: StandIn, upstream: ThreadedApp,
                                           receiver: Receiver, gateway: Any) -> None:
    traced = config(standin, upstream, receiver, 1.0)
    plain = {k: v for k, v in traced.items() if k != "observe"}
    g = gateway(plain, ENV)
    off, on, off_again = (os.urandom(16).hex() for _ in range(3))
    assert get(g.url + "/pub/r", {"X-Trace-Id": off})[0] == 200
    reloaded(g, traced)
    assert get(g.url + "/pub/r", {"X-Trace-Id": on})[0] == 200
    assert len(receiver.of_trace(on, 2)) == 2
    reloaded(g, plain)
    assert get(g.url + "/pub/r", {"X-Trace-Id": off_again})[0] == 200
    assert g.stop() == 0
    assert receiver.of_trace(off, 1, timeout=0.05) == []
    assert receiver.of_trace(off_again, 1, timeout=0.05) == []


def test_every_worker_exports(upstream: ThreadedApp, receiver: Receiver,
                              gateway: Any) -> None:
    """With several workers each one exports its own requests' spans (the exporter
    thread is started in the worker, after the fork)."""
    cfg = {"server": {"workers": 2}, "upstreams": {"svc": {"targets": [{"url": upstream.url}]}},
           "routes": [{"name": "pub", "match": {"path": "/pub/*rest"}, "upstream": "svc"}],
           "observe": {"tracing": {"otlp": receiver.url, "sample": 1}}}
    g = gateway(cfg, ENV)
    tids = [os.urandom(16).hex() for _ in range(12)]
    for tid in tids:
        assert get(g.url + "/pub/w", {"X-Trace-Id": tid})[0] == 200
    pids = {x["pid"] for x in g.log_lines() if x.get("trace_id") in tids}
    assert len(pids) == 2, "both workers should have served some of them"
    assert all(len(receiver.of_trace(t, 2)) == 2 for t in tids)
