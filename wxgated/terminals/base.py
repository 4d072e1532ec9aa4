"""The terminal registry: the one key of a route that answers it.

A terminal is `upstream`, `aggregate`, `respond` or `wechat` (docs/CONFIG.md). Each module
registers a `Terminal` with its route key, the JSON Schema fragment for that key's value,
and a `build(value, route, ctx)` called once per route at compile time: it returns an
`async (req) -> Response` handler, or an object whose `start(req, flow)` answers
through the engine's flow itself (the proxy, wxgated.gateway.engine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Terminal:
    key: str
    schema: dict[str, Any]
    build: Callable[[Any, dict[str, Any], Any], Any]


TERMINALS: dict[str, Terminal] = {}


def register_terminal(terminal: Terminal) -> Terminal:
    if terminal.key in TERMINALS:
        raise RuntimeError(f"terminal {terminal.key!r} registered twice")
    TERMINALS[terminal.key] = terminal
    return terminal
