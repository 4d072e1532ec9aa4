"""Spans of sampled requests: the request, each upstream try, each WeChat call.

Off (no `observe.tracing`), `tracer` is None and the hot path pays one `is not None`
test where a span could start or end: `dispatch.done`, the fast proxy's write and
answer, `forward`'s tries, the WeChat client. Nothing else here runs.

On, the spans are not live SDK spans: the request's timings are all known when it is
done, so a request keeps a few plain tuples (`Trace`) and `finish` hands them, built
as finished spans, to the sink (wxgated.observe.otlp: the SDK's BatchSpanProcessor,
which exports from its own thread). That lets the spans carry ids the SDK could not
choose: the gateway's own trace id (the access log's `trace_id`, hashed to 32 hex as
for the upstream's traceparent when it is not hex already) and, for an upstream try,
the span id the upstream received in its traceparent, so the upstream's spans hang
under the try that called them.

Sampling is decided once per request, on the trace id (as the SDK's
TraceIdRatioBased: its low 64 bits against `sample`), so every worker and every
gateway in a chain makes the same choice for one trace. A caller's traceparent of the
same trace decides instead, by its sampled flag (`sample: 0` still exports nothing).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from random import getrandbits
from typing import Any, NamedTuple, Protocol

from wxgated.observe.trace import new_trace_id, trace_hex
from wxgated.observe.tracing_config import TracingSettings

SERVER = "server"
CLIENT = "client"
_KEY = "_trace"  # the request's Trace (or None: not sampled) in req.ctx
_LOW64 = (1 << 64) - 1
_TP = b"\r\ntraceparent: 00-"  # request_block writes it last, ours always (the client's is dropped)
_SPAN_AT = len(_TP) + 33  # the span id, after the trace id and its dash


class Span(NamedTuple):
    """A finished span; ids are ints (128-bit trace, 64-bit span), times ns since epoch."""

    name: str
    kind: str
    trace: int
    span: int
    parent: int  # 0: a root span
    remote_parent: bool
    start: int
    end: int
    attrs: dict[str, Any]
    failed: bool


class Sink(Protocol):
    def emit(self, spans: list[Span]) -> None: ...

    def shutdown(self) -> None: ...


class Trace:
    """One sampled request: its ids and the client spans made while it ran (times are
    loop-monotonic until `finish` converts them)."""

    __slots__ = ("trace", "span", "parent", "children", "pending", "pending_start")

    def __init__(self, trace: int, parent: int) -> None:
        self.trace = trace
        self.span = _span_id()
        self.parent = parent
        self.children: list[tuple[str, int, float, float, dict[str, Any], bool]] = []
        self.pending = 0  # the span id written in the traceparent of the try in flight
        self.pending_start = 0.0


def _span_id() -> int:
    return getrandbits(64) or 1


def incoming(traceparent: bytes | None, trace: int) -> tuple[int, bool | None]:
    """(parent span id, sampled flag) of a caller's traceparent of this same trace;
    (0, None) when there is none or it names another trace (a client's X-Trace-Id won)."""
    if not traceparent:
        return 0, None
    parts = traceparent.strip().split(b"-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return 0, None
    try:
        if int(parts[1], 16) != trace:
            return 0, None
        return int(parts[2], 16), bool(int(parts[3], 16) & 1)
    except ValueError:
        return 0, None


class Tracer:
    def __init__(self, settings: TracingSettings, sink: Sink) -> None:
        self.settings = settings
        self.sink = sink
        self.bound = round(settings.sample * (1 << 64))

    def keeps(self, trace: int) -> bool:
        return (trace & _LOW64) < self.bound

    def decide(self, req: Any) -> Trace | None:
        """The request's Trace when it is sampled (decided once, kept in req.ctx)."""
        ctx = req.ctx
        if _KEY in ctx:
            return ctx[_KEY]
        tr = None
        if self.bound:
            trace = int(req.trace_hex or trace_hex(req.trace_id), 16)
            parent, flag = incoming(req.header(b"traceparent"), trace)
            if self.keeps(trace) if flag is None else flag:
                tr = Trace(trace, parent)
        ctx[_KEY] = tr
        return tr

    def outgoing(self, req: Any, lines: bytes) -> bytes:
        """The forwarded header lines of one upstream try: a sampled request's
        traceparent carries the try's own span id, an unsampled one says so (flags 00)."""
        at = lines.rfind(_TP)
        if at < 0:
            return lines
        at += _SPAN_AT
        tr = self.decide(req)
        if tr is None:
            return lines[:at + 17] + b"00" + lines[at + 19:]
        tr.pending = sid = _span_id()
        tr.pending_start = time.monotonic()
        return lines[:at] + b"%016x" % sid + lines[at + 16:]

    def tried(self, req: Any, upstream: str, target: str, attempt: int, status: int | None,
              error: Any) -> None:
        """One upstream try ended (after `outgoing` wrote its traceparent)."""
        tr = req.ctx.get(_KEY)
        if tr is None or not tr.pending:
            return
        attrs: dict[str, Any] = {"wxgated.upstream": upstream, "server.address": target,
                                 "url.full": target, "wxgated.attempt": attempt,
                                 "http.request.method": req.method}
        if attempt > 1:
            attrs["http.request.resend_count"] = attempt - 1
        if status is not None:
            attrs["http.response.status_code"] = status
        if error is not None:
            attrs["error.type"] = error.reason
        tr.children.append(("upstream " + upstream, tr.pending, tr.pending_start,
                            time.monotonic(), attrs, error is not None or (status or 0) >= 500))
        tr.pending = 0

    def wechat(self, api: str, start: float, errcode: int, status: int | None) -> None:
        """One WeChat API call ended: a child of the request it served, or, made for
        no request (the access-token keeper), a trace of its own."""
        current = CURRENT.get()
        if current is False:
            return  # a request that is not sampled
        attrs: dict[str, Any] = {"wechat.api": api, "wechat.errcode": errcode,
                                 "server.address": "wechat"}
        if status is not None:
            attrs["http.response.status_code"] = status
        now = time.monotonic()
        record = ("wechat " + api, _span_id(), start, now, attrs, errcode != 0)
        if isinstance(current, Trace):
            current.children.append(record)
            return
        trace = int(new_trace_id(), 16)
        if self.keeps(trace):
            tr = Trace(trace, 0)
            tr.span = 0
            self.sink.emit(_spans(tr, [], [record], time.monotonic(), time.time_ns()))

    def finish(self, req: Any, status: int) -> None:
        """The request is answered: its spans go to the exporter."""
        tr = self.decide(req)
        if tr is None:
            return
        route = req.route.name if req.route is not None else ""
        attrs: dict[str, Any] = {
            "http.request.method": req.method, "http.response.status_code": status,
            "http.target": req.orig_path, "url.path": req.orig_path, "http.route": route,
            "client.address": req.client_ip, "wxgated.trace_id": req.trace_id,
        }
        if req.reason:
            attrs["wxgated.reason"] = req.reason
        server = (f"{req.method} {route}" if route else req.method, req.start, attrs,
                  status >= 500)
        self.sink.emit(_spans(tr, [server], tr.children, time.monotonic(), time.time_ns()))


def _spans(tr: Trace, server: list[tuple[str, float, dict[str, Any], bool]],
           children: list[tuple[str, int, float, float, dict[str, Any], bool]],
           now: float, now_ns: int) -> list[Span]:
    """Spans with wall-clock times (from the monotonic ones, against one reading)."""
    def wall(mono: float) -> int:
        return now_ns - int((now - mono) * 1e9)

    out = [Span(name, SERVER, tr.trace, tr.span, tr.parent, True, wall(start), now_ns,
                attrs, failed) for name, start, attrs, failed in server]
    out += [Span(name, CLIENT, tr.trace, sid, tr.span, False, wall(start), wall(end), attrs,
                 failed) for name, sid, start, end, attrs, failed in children]
    return out


tracer: Tracer | None = None
# the Trace of the request a WeChat call is made for (False: not sampled, None: none)
CURRENT: ContextVar[Trace | bool | None] = ContextVar("wxgated_trace", default=None)


def in_trace(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """A handler whose WeChat calls know the request they serve (when tracing is on)."""
    async def traced(req: Any) -> Any:
        t = tracer
        if t is None:
            return await handler(req)
        token = CURRENT.set(t.decide(req) or False)
        try:
            return await handler(req)
        finally:
            CURRENT.reset(token)

    return traced


async def drain(sink: Sink, within: float) -> bool:
    """Shut `sink` down (it exports what is queued) in a daemon thread, waiting at most
    `within` seconds: a collector that is down must not hold a stop or a reload up for
    the exporter's retries. True when it finished in time."""
    thread = threading.Thread(target=sink.shutdown, name="wxgated-trace-drain", daemon=True)
    thread.start()
    deadline = time.monotonic() + within
    while thread.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return not thread.is_alive()


def configure(settings: TracingSettings | None,
              open_sink: Callable[[TracingSettings], Sink] | None = None) -> Tracer | None:
    """Install the tracer `settings` ask for; returns the replaced one, whose sink the
    caller shuts down (off the loop: it flushes over the network). Unchanged settings
    keep the running tracer."""
    global tracer
    old = tracer
    if (old.settings if old is not None else None) == settings:
        return None
    if settings is None:
        tracer = None
        return old
    if open_sink is None:
        from wxgated.observe.otlp import OTLPSink

        open_sink = OTLPSink
    tracer = Tracer(settings, open_sink(settings))
    return old
