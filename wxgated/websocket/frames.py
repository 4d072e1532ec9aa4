"""Just enough RFC 6455 framing for a relay that never decodes a payload.

The WebSocket tunnel copies bytes as they come, so close codes and extensions pass
through untouched. It still has to know where frames end: on shutdown or idle timeout
the gateway sends its own close frame, and that frame may only go between two frames,
never inside one. A `FrameCursor` follows one direction by reading frame headers and
skipping payloads by count, so a large message costs one comparison per chunk.
"""

from __future__ import annotations

import os

OP_CLOSE = 0x8
GOING_AWAY = 1001


def _header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(header length, payload length, opcode) of the frame at `pos`; (0, 0, 0) when
    the header is not all there yet."""
    avail = len(data) - pos
    if avail < 2:
        return 0, 0, 0
    b1 = data[pos + 1]
    size = b1 & 0x7F
    hlen = 6 if b1 & 0x80 else 2  # a masked frame carries a 4-byte key
    if size == 126:
        hlen += 2
    elif size == 127:
        hlen += 8
    if avail < hlen:
        return 0, 0, 0
    if size == 126:
        size = int.from_bytes(data[pos + 2:pos + 4], "big")
    elif size == 127:
        size = int.from_bytes(data[pos + 2:pos + 10], "big")
    return hlen, size, data[pos] & 0x0F


class FrameCursor:
    """Where the frame boundaries fall in one direction of a WebSocket stream."""

    __slots__ = ("left", "head", "closed")

    def __init__(self) -> None:
        self.left = 0  # payload bytes of the current frame still to come
        self.head = b""  # a frame header split across reads
        self.closed = False  # a close frame has gone by

    @property
    def at_boundary(self) -> bool:
        return self.left == 0 and not self.head

    def feed(self, data: bytes) -> None:
        left = self.left
        n = len(data)
        if left >= n:  # still inside one payload: the common case for big messages
            self.left = left - n
            return
        if self.head:  # `left` is 0 here
            data = self.head + data
            n = len(data)
            self.head = b""
        pos = left
        while pos < n:
            hlen, size, op = _header(data, pos)
            if not hlen:
                self.head = data[pos:]
                self.left = 0
                return
            if op == OP_CLOSE:
                self.closed = True
            pos += hlen + size
        self.left = pos - n

    def frame_end(self, data: bytes) -> int:
        """How many bytes of `data` finish the frame in progress (0 at a boundary), or -1
        when it does not end within `data`."""
        if not self.head:
            return self.left if self.left <= len(data) else -1
        buf = self.head + data
        hlen, size, _ = _header(buf, 0)
        if not hlen or hlen + size > len(buf):
            return -1
        return hlen + size - len(self.head)


def close_frame(code: int, reason: bytes = b"", masked: bool = False) -> bytes:
    """A close frame; `masked` for the client-to-server direction (RFC 6455 §5.3)."""
    payload = code.to_bytes(2, "big") + reason[:123]
    if not masked:
        return bytes((0x80 | OP_CLOSE, len(payload))) + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return bytes((0x80 | OP_CLOSE, 0x80 | len(payload))) + key + body
