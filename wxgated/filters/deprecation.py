"""The `deprecation` filter: tell clients a route (an API version) is going away.

Adds `Deprecation` (RFC 9745: `@<unix seconds>`), `Sunset` (RFC 8594: an HTTP-date)
and `Link: <url>; rel="deprecation"` to every answer of the route, gateway errors
included, so client developers see it whatever the outcome. The header values are
built once at compile time.

    filters:
      - deprecation: {deprecated: "2026-01-01", sunset: "2026-07-01",
                      link: "https://dev.example.com/migrate-v2"}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.filters.base import Filter, register
from wxgated.http.message import Headers, Request


def parse_when(value: Any) -> dt.datetime:
    """An ISO date or date-time (YAML may already have made it a date) as aware UTC."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not a date (use e.g. 2026-07-01 or "
                             "2026-07-01T00:00:00Z)") from None
    else:
        raise ValueError(f"{value!r} is not a date")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def deprecation_headers(deprecated: Any = None, sunset: Any = None,
                        link: str | None = None) -> Headers:
    headers: Headers = []
    if deprecated is not None:
        headers.append((b"deprecation", b"@%d" % int(parse_when(deprecated).timestamp())))
    if sunset is not None:
        headers.append((b"sunset", format_datetime(parse_when(sunset), usegmt=True).encode()))
    if link:
        headers.append((b"link", f'<{link}>; rel="deprecation"'.encode()))
    return headers


@dataclass(frozen=True, slots=True)
class DeprecationConfig:
    """The `deprecation` options as written: dates are whatever YAML made of them (a
    date, a date-time or a string), read by parse_when."""

    deprecated: object
    sunset: object
    link: str | None


@register
class DeprecationFilter(Filter):
    name = "deprecation"
    config_class = DeprecationConfig
    schema = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "deprecated": {"description": "date the route was deprecated (ISO 8601)"},
            "sunset": {"description": "date the route stops working (ISO 8601)"},
            "link": {"type": "string", "description": "where to read about the migration"},
        },
    }

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        cfg = self.cfg = options(DeprecationConfig, config, self.schema)
        try:
            self.headers = deprecation_headers(cfg.deprecated, cfg.sunset, cfg.link)
        except ValueError as e:
            raise SemanticError(f"deprecation: {e}") from None
        if not self.headers:
            raise SemanticError("deprecation: give deprecated, sunset or link",
                                )

    def request(self, req: Request) -> None:
        req.add_response_headers(self.headers)
