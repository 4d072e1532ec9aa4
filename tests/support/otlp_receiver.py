"""A stand-in OTLP/HTTP collector: POST /v1/traces with an ExportTraceServiceRequest
in protobuf (OTLP specification, "OTLP/HTTP"), decoded with the protocol's own
classes (opentelemetry-proto). It keeps every span it is sent, flattened, for tests
to check: ids as hex, kind as its enum name, attributes as a dict."""

from __future__ import annotations

import gzip
import threading
import time
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from tests.support.servers import ThreadedApp


def _value(v: Any) -> Any:
    field = v.WhichOneof("value")
    return getattr(v, field) if field else None


class Receiver:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.posts: list[dict[str, str]] = []  # the request headers of each export
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        self.server = ThreadedApp(app)
        self.url = self.server.url + "/v1/traces"

    async def _export(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415)
        raw = await request.read()
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(raw)
        found = []
        for rs in msg.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    found.append({
                        "name": s.name, "kind": PbSpan.SpanKind.Name(s.kind),
                        "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(), "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano, "status": s.status.code,
                        "attrs": {a.key: _value(a.value) for a in s.attributes},
                        "resource": resource, "scope": ss.scope.name,
                    })
        with self._lock:
            self.spans.extend(found)
            self.posts.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def of_trace(self, trace_hex: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The spans of one trace once `count` of them arrived (all there are then)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [s for s in self.spans if s["trace_id"] == trace_hex]
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.stop()
