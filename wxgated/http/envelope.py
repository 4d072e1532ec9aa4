"""The one JSON envelope every gateway-made response uses (docs/CONFIG.md)."""

from __future__ import annotations

import json
from typing import Any

from wxgated.http.message import Headers, HTTPError, Response

JSON_TYPE = b"application/json; charset=utf-8"


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


def envelope_body(code: int, msg: str, data: Any = None, trace_id: str = "",
                  extra: dict[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {"code": code, "msg": msg, "data": data, "trace_id": trace_id}
    if extra:
        doc.update(extra)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(err: HTTPError, trace_id: str) -> Response:
    return envelope(
        err.status, err.data, trace_id=trace_id, code=err.code, msg=err.msg, headers=err.headers
    )
