"""What the server protocol (wxgated.http.server) needs from whoever owns it.

Kept apart from the protocol so the dispatcher, tests and the protocol share one
contract without importing each other's machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from wxgated.http.deadlines import Deadlines
from wxgated.http.message import Request, Response
from wxgated.http.target import DEFAULT_RULES, PathRules

if TYPE_CHECKING:
    from wxgated.http.server import GatewayProtocol


class ServerConfig:
    """Per-listener settings, read on every request: plain attributes, no lookups."""

    __slots__ = ("max_header", "max_body", "header_timeout", "idle_timeout", "scheme",
                 "max_connections", "body_timeout", "request_buffer", "path_rules",
                 "allow_underscores")

    def __init__(self, max_header: int = 16384, max_body: int = 1 << 20,
                 header_timeout: float = 10.0, idle_timeout: float = 75.0,
                 scheme: str = "http", max_connections: int = 0,
                 body_timeout: float = 60.0, request_buffer: int = 64 * 1024,
                 path_rules: PathRules = DEFAULT_RULES,
                 allow_underscores: bool = False) -> None:
        self.max_header = max_header
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.scheme = scheme
        self.max_connections = max_connections
        # the whole request body must be in this long after its head (0: no deadline)
        self.body_timeout = body_timeout
        # bodies up to this size are read whole before an upstream connection is taken
        self.request_buffer = request_buffer
        self.path_rules = path_rules
        self.allow_underscores = allow_underscores


class Dispatcher:
    """What the protocol calls: `start` answers a request, `done` logs and counts it.

    wxgated.gateway.dispatch implements it; the protocol knows only this contract.
    """

    cfg: ServerConfig
    connections: set[GatewayProtocol]
    deadlines: Deadlines
    shutting_down: bool

    def start(self, req: Request, sink: Callable[[Request, Response], None]) -> None:
        """Answer `req`, now or later, through `sink(req, resp)`."""
        raise NotImplementedError  # pragma: no cover - interface

    def begin(self, peer_ip: str, headers: list[tuple[bytes, bytes]],
              by_name: dict[bytes, bytes], method: str, path: str, query: str,
              version: str, keep_alive: bool) -> Request:  # pragma: no cover
        raise NotImplementedError

    def reject(self, req: Request, status: int, msg: str,
               reason: str) -> Response:  # pragma: no cover
        raise NotImplementedError

    def done(self, req: Request, status: int, bytes_in: int, bytes_out: int) -> None:
        pass  # pragma: no cover

    def refused(self, peer_ip: str, status: int, url: bytes, trace_id: str) -> None:
        """A request refused before it was parsed whole (bad framing, a bad target or
        Host): counted and logged like any other, so probing shows in the logs."""

    def abandon(self, req: Request) -> None:
        """A begun request that will never be answered: queued behind the answer that
        closed its connection (nginx logs nothing for those either)."""
