"""The `envelope` filter: wrap an upstream's JSON answer in the gateway envelope.

Mini programs then handle every answer one way: `{code, msg, data, trace_id}`. A 2xx
answer becomes `code: 0, msg: "ok"`; any other status keeps its HTTP status and gets
`code: <status>` with `msg` taken from the body (`msg`, `message`, `errmsg` or `error`)
when it has one, so the backend's own explanation reaches the client.

Only JSON is touched: other content types, compressed bodies, HEAD answers, bodies over
`max_size` (streamed on untouched) and bodies that do not parse pass through as they
came. The status is never changed. An `aggregate` answer is already an envelope and is
not wrapped twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from wxgated.cache.body import buffer_upto
from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.config.units import SIZE_PATTERN
from wxgated.config.units import parse_size as size
from wxgated.filters.base import Filter, register
from wxgated.gateway.envelope import JSON_TYPE
from wxgated.http.message import Request, Response

_MSG_KEYS = ("msg", "message", "errmsg", "error")
_AGGREGATED = b"x-wxgated-completed"
# The body changed, so these no longer describe it.
_STALE_HEADERS = frozenset({b"content-length", b"etag", b"content-md5", b"digest",
                            b"content-type"})


def is_json(ctype: bytes | None) -> bool:
    if ctype is None:
        return False
    media = ctype.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                             and media.endswith(b"+json"))


def message_for(status: int, body: Any) -> str:
    """The backend's own message when the body carries one, else the reason phrase."""
    if isinstance(body, dict):
        for k in _MSG_KEYS:
            v = body.get(k)
            if isinstance(v, str) and v:
                return v
            if isinstance(v, dict) and isinstance(v.get("message"), str):
                return str(v["message"])
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def wrap_body(status: int, body: Any, trace_id: str) -> bytes:
    if 200 <= status < 300:
        doc = {"code": 0, "msg": "ok", "data": body, "trace_id": trace_id}
    else:
        doc = {"code": status, "msg": message_for(status, body), "data": body,
               "trace_id": trace_id}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class EnvelopeConfig:
    """The `envelope` options as written (defaults: the schema's)."""

    max_size: str | int


@register
class EnvelopeFilter(Filter):
    name = "envelope"
    config_class = EnvelopeConfig
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_size": {"type": ["string", "integer"], "pattern": SIZE_PATTERN,
                         "default": "1MiB",
                         "description": "larger bodies pass through unwrapped, streamed"},
        },
    }

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.cfg = options(EnvelopeConfig, config, self.schema)
        try:
            self.max_size = size(self.cfg.max_size)
        except ValueError as e:
            raise SemanticError(str(e), path=["max_size"]) from None

    async def response(self, req: Request, resp: Response) -> Response | None:
        if resp.error is not None:  # the gateway's own envelope already
            return None
        if req.method == "HEAD" or resp.status in (204, 304) or resp.status < 200:
            return None
        if not is_json(resp.header(b"content-type")) or resp.header(_AGGREGATED) is not None:
            return None  # not JSON, or already the gateway's envelope (aggregate)
        enc = resp.header(b"content-encoding")
        if enc is not None and enc.strip().lower() not in (b"", b"identity"):
            return None
        if not await buffer_upto(resp, self.max_size):
            return None
        try:
            body = json.loads(resp.body)
        except ValueError:
            return None
        data = wrap_body(resp.status, body, req.trace_id)
        headers = [(k, v) for k, v in resp.headers if k not in _STALE_HEADERS]
        headers.append((b"content-type", JSON_TYPE))
        headers.append((b"content-length", str(len(data)).encode()))
        return Response(resp.status, headers, data)
