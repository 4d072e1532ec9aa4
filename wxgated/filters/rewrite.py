"""`rewrite: {regex, to}` rewrites the upstream path with a regex compiled once.

`to` may use regex groups (`\\1`, `\\g<name>`) and route params (`{param.id}`).
"""

from __future__ import annotations

import re
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.filters.base import RequestFilter, register
from wxgated.http.message import Request

_PARAM = re.compile(r"\{param\.([A-Za-z_][A-Za-z0-9_]*)\}")


@register
class Rewrite(RequestFilter):
    name = "rewrite"
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["regex", "to"],
        "properties": {
            "regex": {"type": "string", "description": "matched against the request path"},
            "to": {"type": "string", "description": "replacement; \\1 and {param.x} allowed"},
        },
    }

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        try:
            self.regex = re.compile(config["regex"])
        except re.error as exc:
            raise SemanticError(f"invalid regex: {exc}", ("regex",)) from None
        self.to = config["to"]
        self.params = tuple(_PARAM.findall(self.to))

    def apply(self, req: Request) -> None:
        template = self.to
        for p in self.params:
            template = template.replace("{param." + p + "}", req.params.get(p, ""))
        req.path = self.regex.sub(template, req.path, count=1)
        if not req.path.startswith("/"):
            req.path = "/" + req.path
