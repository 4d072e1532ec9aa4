"""The `respond` terminal: a fixed answer made at compile time (health pings, stubs)."""

from __future__ import annotations

import json
from typing import Any

from wxgated.http.message import Handler, Request, Response
from wxgated.terminals.base import Terminal, register_terminal

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "status": {"type": "integer", "minimum": 200, "maximum": 599, "default": 200},
        "json": {"description": "a JSON value sent as the body"},
        "body": {"type": "string", "description": "a text body"},
        "content_type": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "not": {"required": ["json", "body"]},
}


def build(value: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    status = int(value.get("status", 200))
    if "json" in value:
        body = json.dumps(value["json"], ensure_ascii=False, separators=(",", ":")).encode()
        ctype = value.get("content_type", "application/json; charset=utf-8")
    else:
        body = str(value.get("body", "")).encode()
        ctype = value.get("content_type", "text/plain; charset=utf-8")
    headers = [(b"content-type", ctype.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in value.get("headers", {}).items()]

    async def respond(req: Request) -> Response:
        return Response(status, list(headers), body)

    return respond


register_terminal(Terminal("respond", SCHEMA, build))
