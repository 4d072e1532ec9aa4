"""`request_headers` / `response_headers`: set, add, remove headers.

Identity headers (`X-WX-*`) cannot be set this way: only the gateway's own
authentication may assert who the caller is (docs/CONFIG.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.filters.base import Filter, register
from wxgated.http.message import Headers, Request, Response

# a field name is an RFC 9110 token; a value may not hold a control byte but HTAB
_NAME = {"type": "string", "pattern": r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"}
_MAP = {"type": "object", "propertyNames": _NAME,
        "additionalProperties": {"type": "string", "pattern": r"^[^\x00-\x08\x0a-\x1f\x7f]*$"}}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "set": {**_MAP, "default": {}, "description": "replace (or create) these headers"},
        "add": {**_MAP, "default": {},
                "description": "append these headers, keeping existing ones"},
        "remove": {"type": "array", "items": _NAME, "default": [],
                   "description": "drop these headers"},
    },
}


@dataclass(frozen=True, slots=True)
class HeadersConfig:
    """The `request_headers` / `response_headers` options (defaults: the schema's)."""

    set: Mapping[str, str]
    add: Mapping[str, str]
    remove: tuple[str, ...]


class _HeaderEdit:
    def __init__(self, config: HeadersConfig, identity_ok: bool) -> None:
        for op, names in (("set", config.set), ("add", config.add)):
            for name in names:
                if name.lower().startswith("x-wx-") and not identity_ok:
                    raise SemanticError(f"{name}: X-WX-* headers are set by the gateway only",
                                        (op, name))
        self.set = [(k.lower().encode(), v.encode()) for k, v in config.set.items()]
        self.add = [(k.lower().encode(), v.encode()) for k, v in config.add.items()]
        drop = {k.lower().encode() for k in config.remove}
        self.drop = frozenset(drop | {k for k, _ in self.set})

    def apply(self, headers: Headers) -> Headers:
        drop = self.drop
        out = [(k, v) for k, v in headers if k not in drop] if drop else list(headers)
        out.extend(self.set)
        out.extend(self.add)
        return out


@register
class RequestHeaders(Filter):
    name = "request_headers"
    config_class = HeadersConfig
    schema = SCHEMA

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.cfg = options(HeadersConfig, config, self.schema)
        self.edit = _HeaderEdit(self.cfg, identity_ok=False)

    def request(self, req: Request) -> None:
        req.headers = self.edit.apply(req.headers)


@register
class ResponseHeaders(Filter):
    name = "response_headers"
    config_class = HeadersConfig
    schema = SCHEMA

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.cfg = options(HeadersConfig, config, self.schema)
        self.edit = _HeaderEdit(self.cfg, identity_ok=True)

    def response(self, req: Request, resp: Response) -> None:
        if resp.error is None:  # the gateway's own errors keep their headers
            resp.headers = self.edit.apply(resp.headers)
