"""From a parsed request to a response: route it, run its pipeline, count and log it.

The dispatcher holds the current Snapshot; a reload swaps it in one assignment. A
request keeps the route (and so the pipeline and Snapshot) it matched, so in-flight
requests finish on the config they started with.
"""

from __future__ import annotations

import time
from typing import Any

from wxgated.gateway.engine import Sink
from wxgated.gateway.envelope import envelope
from wxgated.http.clientip import ClientIPResolver
from wxgated.http.deadlines import Deadlines
from wxgated.http.message import NO_BODY, Request, Response
from wxgated.http.server import GatewayProtocol
from wxgated.http.serving import Dispatcher, ServerConfig
from wxgated.observe import tracing
from wxgated.observe.accesslog import AccessLog
from wxgated.observe.metrics import RouteMetrics, in_flight_source
from wxgated.observe.trace import trace_id_for
from wxgated.versioning import request_version

# the access log's reason for a request the parser refused (http.framing: a bad head,
# too large, too slow)
_REFUSED = {400: "bad_request", 408: "header_timeout", 413: "body_too_large",
            414: "uri_too_long", 431: "header_too_large"}


class GatewayDispatcher(Dispatcher):
    def __init__(self, snapshot: Any, cfg: ServerConfig, access_log: AccessLog,
                 client_ip: ClientIPResolver) -> None:
        self.snapshot = snapshot
        self.cfg = cfg
        self.access_log = access_log
        self.client_ip = client_ip
        self.connections: set[GatewayProtocol] = set()
        self.deadlines = Deadlines(0.25)  # header and idle timeouts of client connections
        self.shutting_down = False
        self.in_flight = 0
        self._unmatched = RouteMetrics("")
        in_flight_source(lambda: self.in_flight)
        self._time = time.monotonic

    def protocol(self) -> GatewayProtocol:
        return GatewayProtocol(self)

    def begin(self, peer_ip: str, headers: list[tuple[bytes, bytes]],
              by_name: dict[bytes, bytes], method: str, path: str, query: str,
              version: str, keep_alive: bool) -> Request:
        xff = by_name.get(b"x-forwarded-for")
        host = by_name.get(b"host")
        client = self.client_ip.resolve(peer_ip, xff, headers) if xff is not None else peer_ip
        trace_id, w3c = trace_id_for(by_name.get(b"x-trace-id"), by_name.get(b"traceparent"))
        req = Request(method, path, query, headers, NO_BODY, version, keep_alive,
                      self.cfg.scheme, client, peer_ip, trace_id, self._time())
        req.trace_hex = w3c
        if host is not None:
            req.host = host.decode("latin-1")
        self.in_flight += 1
        return req

    def _match(self, req: Request) -> Response | None:
        """Set the request's route and params; the 404/405 answer when none matches."""
        snap = self.snapshot
        if snap.versions is None:
            route, params, allow = snap.router.match(req.method, req.host, req.path)
        else:
            route, params, allow = match_versioned(snap, req)
        if route is None:
            if allow:
                req.reason = "method_not_allowed"
                return envelope(405, None, trace_id=req.trace_id, code=405,
                                msg="method not allowed",
                                headers=[(b"allow", ", ".join(allow).encode())])
            req.reason = "no_route"
            return envelope(404, None, trace_id=req.trace_id, code=404, msg="not found")
        req.route = route
        req.params = params
        return None

    def start(self, req: Request, sink: Sink) -> None:
        """Route `req` and run its pipeline; the answer goes to `sink`."""
        miss = self._match(req)
        if miss is not None:
            sink(req, miss)
            return
        req.route.pipeline.run(req, sink)

    def reject(self, req: Request, status: int, msg: str, reason: str) -> Response:
        req.reason = reason
        return envelope(status, None, trace_id=req.trace_id, code=status, msg=msg)

    def refused(self, peer_ip: str, status: int, url: bytes, trace_id: str) -> None:
        req = Request("-", url[:2048].decode("latin-1") or "-", "", [], NO_BODY, "1.1", False,
                      self.cfg.scheme, peer_ip, peer_ip, trace_id, self._time())
        req.reason = _REFUSED.get(status, "bad_request")
        self._unmatched.observe("-", status, 0.0)
        self.access_log.log(req, status, 0, 0, 0.0)

    def abandon(self, req: Request) -> None:
        self.in_flight -= 1

    def done(self, req: Request, status: int, bytes_in: int, bytes_out: int) -> None:
        self.in_flight -= 1
        flow = req.flow
        if flow is not None:  # a pipeline with done phases
            flow.done(status)
        duration = self._time() - req.start
        route = req.route
        metrics = route.metrics if route is not None else self._unmatched
        metrics.observe(req.method, status, duration)
        self.access_log.log(req, status, bytes_in, bytes_out, duration)
        if tracing.tracer is not None:
            tracing.tracer.finish(req, status)


def match_versioned(snap: Any, req: Request) -> tuple[Any, dict[str, str], tuple[str, ...]]:
    """Routes of the requested version first (path segment stripped), then unversioned."""
    version = request_version(req, snap.versions)
    tree = snap.versioned.get(version) if version is not None else None
    if tree is not None:
        found = tree.match(req.method, req.host, req.path)
        if found[0] is not None:
            return found
        fallback = snap.router.match(req.method, req.host, req.path)
        return fallback if fallback[0] is not None or fallback[2] else found
    return snap.router.match(req.method, req.host, req.path)
