"""The `respond` terminal: a fixed answer made at compile time (health pings, stubs).

It answers from `start`, within the engine's call: no task, no coroutine."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wxgated.config.options import options
from wxgated.http.message import Request, Response
from wxgated.terminals.base import Terminal, register_terminal

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "status": {"type": "integer", "minimum": 200, "maximum": 599, "default": 200},
        "json": {"description": "a JSON value sent as the body"},
        "body": {"type": "string", "default": "", "description": "a text body"},
        "content_type": {"type": "string", "description": "default: application/json "
                         "with `json`, else text/plain (both charset=utf-8)"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"},
                    "default": {}},
    },
    "not": {"required": ["json", "body"]},
}


@dataclass(frozen=True, slots=True)
class RespondConfig:
    status: int
    json: Any
    body: str
    content_type: str | None
    headers: Mapping[str, str]


class Respond:
    __slots__ = ("status", "headers", "body")

    def __init__(self, value: dict[str, Any]) -> None:
        cfg = options(RespondConfig, value, SCHEMA)
        if "json" in value:  # `json: null` is a body too
            self.body = json.dumps(value["json"], ensure_ascii=False,
                                   separators=(",", ":")).encode()
            ctype = cfg.content_type or "application/json; charset=utf-8"
        else:
            self.body = cfg.body.encode()
            ctype = cfg.content_type or "text/plain; charset=utf-8"
        self.status = cfg.status
        self.headers = [(b"content-type", ctype.encode()),
                        *((k.lower().encode(), v.encode()) for k, v in cfg.headers.items())]

    def start(self, req: Request, flow: Any) -> None:
        flow.respond(self.answer())

    async def __call__(self, req: Request) -> Response:
        """As a handler, for callers without a flow."""
        return self.answer()

    def answer(self) -> Response:
        return Response(self.status, list(self.headers), self.body)  # a list of its own


def build(value: dict[str, Any], route: dict[str, Any], ctx: Any) -> Respond:
    return Respond(value)


register_terminal(Terminal("respond", SCHEMA, build))
