"""Small pieces of the server protocol: request framing and the lingering close."""

from __future__ import annotations

from typing import Any

import httptools

LINGER_BYTES = 16 << 20  # at most this much of an unread body is drained before closing


class Discard:
    """Stands in for a tunnel while lingering: input is dropped, the close waits."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.left = LINGER_BYTES

    def from_client(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            self.transport.close()

    def client_lost(self) -> None:
        pass

    def client_paused(self) -> None:
        pass

    def client_resumed(self) -> None:
        pass

    def shutdown(self) -> None:
        self.transport.close()


class HeaderTooLarge(Exception):
    """Raised from a parser callback; httptools wraps it, the size counter tells why."""


def origin_form(url: bytes) -> bytes:
    """Absolute-form request targets (`GET http://host/path`) become origin-form."""
    if url == b"*":
        return b"*"
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        return b"/"
    out = parsed.path or b"/"
    if parsed.query:
        out += b"?" + parsed.query
    return out
