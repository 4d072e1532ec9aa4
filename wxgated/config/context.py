"""What compile-time code (filters, terminals) may reach while building a Snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wxgated.registry import Registry


@dataclass
class CompileContext:
    config: dict[str, Any]  # the whole validated, interpolated config
    registry: Registry  # long-lived objects keyed by stable identity (survive reloads)
    source: str = ""  # the config file path, for error messages
    upstreams: dict[str, Any] = field(default_factory=dict)  # name -> upstream.pool.Upstream
    services: dict[str, Any] = field(default_factory=dict)  # process-wide: "state", "wechat", "jwt", ...
    route_name: str = ""
    route: dict[str, Any] = field(default_factory=dict)  # the raw config of the route being built
    # how many filters of the same kind come before this one in its route (0 for the
    # first), so two rate_limits on one route keep separate state across reloads
    filter_ordinal: int = 0
