"""The one JSON envelope every gateway-made response uses (docs/CONFIG.md); its bytes
are made by the protocol's writer, which answers the refusals it finds itself with it."""

from __future__ import annotations

from typing import Any

from wxgated.http.message import Headers, HTTPError, Response
from wxgated.http.writer import JSON_TYPE, envelope_body

__all__ = ["JSON_TYPE", "envelope", "envelope_body", "error_response"]



def envelope(
    status: int,
    data: Any = None,
    *,
    trace_id: str = "",
    code: int = 0,
    msg: str = "ok",
    headers: Headers | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body = envelope_body(code, msg, data, trace_id, extra)
    hdrs: Headers = [(b"content-type", JSON_TYPE)]
    if headers:
        hdrs.extend(headers)
    return Response(status, hdrs, body)




def error_response(err: HTTPError, trace_id: str) -> Response:
    return envelope(
        err.status, err.data, trace_id=trace_id, code=err.code, msg=err.msg, headers=err.headers
    )
