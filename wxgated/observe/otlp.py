"""The OpenTelemetry SDK end of tracing: finished spans out over OTLP/HTTP.

Imported only when `observe.tracing` is configured (the SDK is the optional `tracing`
extra). The BatchSpanProcessor queues spans and exports them from its own thread, so
the loop never waits on the collector; a collector that is down or slow costs dropped
spans (the SDK's queue is bounded), never requests. Its batching follows the SDK's own
environment variables (OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE, ...).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from wxgated.observe.tracing import SERVER, Span
from wxgated.observe.tracing_config import TracingSettings

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_KINDS = {SERVER: SpanKind.SERVER}
_OK = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


def _version() -> str:
    try:
        return version("wxgated")
    except PackageNotFoundError:
        return "0"


class OTLPSink:
    def __init__(self, settings: TracingSettings) -> None:
        exporter = OTLPSpanExporter(endpoint=settings.otlp, headers=dict(settings.headers))
        self._processor = BatchSpanProcessor(exporter)
        self._resource = Resource.create({"service.name": settings.service_name})
        self._scope = InstrumentationScope("wxgated", _version())

    def emit(self, spans: list[Span]) -> None:
        on_end = self._processor.on_end
        for s in spans:
            parent = (SpanContext(s.trace, s.parent, s.remote_parent, _SAMPLED)
                      if s.parent else None)
            on_end(ReadableSpan(
                s.name, SpanContext(s.trace, s.span, False, _SAMPLED), parent,
                self._resource, s.attrs, kind=_KINDS.get(s.kind, SpanKind.CLIENT),
                status=_ERROR if s.failed else _OK, start_time=s.start, end_time=s.end,
                instrumentation_scope=self._scope))

    def shutdown(self) -> None:
        """Export what is queued (bounded by the SDK's export timeout), then stop."""
        self._processor.shutdown()
