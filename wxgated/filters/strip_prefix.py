"""`strip_prefix: N` drops the first N path segments before proxying.

`/api/v1/users/42` with `strip_prefix: 2` goes upstream as `/users/42`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from wxgated.config.options import options
from wxgated.filters.base import Filter, register
from wxgated.http.message import Request


@dataclass(frozen=True, slots=True)
class StripPrefixConfig:
    """`strip_prefix` is a bare number: its one option."""

    SHORTHAND: ClassVar[str] = "segments"

    segments: int


@register
class StripPrefix(Filter):
    name = "strip_prefix"
    config_class = StripPrefixConfig
    schema = {"type": "integer", "minimum": 1, "maximum": 64,
              "description": "number of leading path segments to drop"}

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.cfg = options(StripPrefixConfig, config, self.schema)
        self.n = self.cfg.segments

    def request(self, req: Request) -> None:
        n = self.n
        parts = req.path.split("/", n + 1)
        req.path = "/" + parts[n + 1] if len(parts) > n + 1 else "/"
