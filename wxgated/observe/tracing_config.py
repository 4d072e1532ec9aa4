"""`observe.tracing`: its schema, its check and its compiled form.

Apart from the tracer itself (wxgated.observe.tracing) so the schema and `wxgated
check` never import the OpenTelemetry SDK: it is an optional extra, and a config that
asks for tracing on a machine without it must fail the check with a clear sentence
(file:line:col) instead of failing at the first sampled request.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from wxgated.config.errors import Issue
from wxgated.config.fragments import OTLP_URL, Schema, obj, string, with_meta
from wxgated.config.loader import Document

DEFAULT_SAMPLE = 0.01
# the modules the exporter needs; checked without importing them
_NEEDED = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
MISSING = ("observe.tracing needs the OpenTelemetry SDK and OTLP/HTTP exporter, which are "
           "not installed: pip install 'wxgated[tracing]' (opentelemetry-sdk, "
           "opentelemetry-exporter-otlp-proto-http)")


def schema() -> Schema:
    tracing = obj({
        "otlp": string(desc="OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces",
                       pattern=OTLP_URL),
        "sample": with_meta({"type": "number", "minimum": 0, "maximum": 1}, DEFAULT_SAMPLE,
                            "share of traces exported, decided on the trace id (0: none)"),
        "service_name": string("wxgated", "service.name of the exported spans", minLength=1),
        "headers": with_meta({"type": "object", "additionalProperties": {"type": "string"}},
                             None, "HTTP headers sent to the collector (auth: use ${ENV})"),
    }, required=("otlp",), desc="export spans over OTLP/HTTP (off unless present)")
    return obj({"tracing": tracing}, default={})


@dataclass(frozen=True)
class TracingSettings:
    otlp: str
    sample: float
    service_name: str
    headers: tuple[tuple[str, str], ...]


def settings(cfg: dict[str, Any]) -> TracingSettings | None:
    """The compiled `observe.tracing` of a validated config, None when tracing is off."""
    raw = (cfg.get("observe") or {}).get("tracing")
    if not raw:
        return None
    return TracingSettings(raw["otlp"], float(raw.get("sample", DEFAULT_SAMPLE)),
                           raw.get("service_name", "wxgated"),
                           tuple(sorted((raw.get("headers") or {}).items())))


def sdk_installed() -> bool:
    try:
        return all(importlib.util.find_spec(name) is not None for name in _NEEDED)
    except ModuleNotFoundError:  # a parent package is missing
        return False


def check(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    """What the schema cannot say: the packages are there, and the URL names a host."""
    tracing = (data.get("observe") or {}).get("tracing")
    if not isinstance(tracing, dict):
        return
    if not sdk_installed():
        yield doc.issue_at(("observe", "tracing"), MISSING, at_key=True)
    for name in tracing.get("headers") or {}:
        if not name or any(c in name for c in " \t\r\n:") or not name.isascii():
            yield doc.issue_at(("observe", "tracing", "headers", name),
                               f"observe.tracing.headers: {name!r} is not a header name",
                               at_key=True)
    url = tracing.get("otlp", "")
    try:
        port = urlsplit(url).port
        host = urlsplit(url).hostname
    except ValueError:
        yield doc.issue_at(("observe", "tracing", "otlp"), "observe.tracing.otlp: bad port")
        return
    if not host:
        yield doc.issue_at(("observe", "tracing", "otlp"),
                           "observe.tracing.otlp: expected http(s)://host[:port]/path")
    elif port == 0:
        yield doc.issue_at(("observe", "tracing", "otlp"), "observe.tracing.otlp: port 0")
