"""`strip_prefix: N` drops the first N path segments before proxying.

`/api/v1/users/42` with `strip_prefix: 2` goes upstream as `/users/42`.
"""

from __future__ import annotations

from typing import Any

from wxgated.filters.base import Filter, register
from wxgated.http.message import Request


@register
class StripPrefix(Filter):
    name = "strip_prefix"
    schema = {"type": "integer", "minimum": 1, "maximum": 64,
              "description": "number of leading path segments to drop"}

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.n = int(config)

    def request(self, req: Request) -> None:
        n = self.n
        parts = req.path.split("/", n + 1)
        req.path = "/" + parts[n + 1] if len(parts) > n + 1 else "/"
