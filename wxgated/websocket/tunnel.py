"""The byte relay behind a proxied WebSocket, from the 101 on.

Bytes are copied as they come, never decoded, so close codes and extensions (e.g.
permessage-deflate) pass through untouched. Each side's reading pauses while the other
side's transport cannot take more, so a slow reader holds a fast writer back instead of
filling the gateway's memory. Frame boundaries are followed (wsframe.FrameCursor) only
so that on shutdown or idle timeout the gateway's own 1001 close frame lands between
two frames.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wxgated.websocket.frames import GOING_AWAY, FrameCursor, close_frame

CLOSE_GRACE = 1.0  # after our close frames, how long the peers get to answer theirs

_RELAY, _SEALING, _SEALED = 0, 1, 2


class _Pipe:
    """One direction of the tunnel. Sealing puts the gateway's close frame on the sink
    at the next frame boundary; after that the source's frames are only watched."""

    __slots__ = ("sink", "cursor", "state", "bye")

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.cursor = FrameCursor()
        self.state = _RELAY
        self.bye = b""

    def relay(self, data: bytes) -> None:
        if self.state == _RELAY:
            self.cursor.feed(data)
            self.sink.write(data)
            return
        if self.state == _SEALING:
            end = self.cursor.frame_end(data)
            if end < 0:
                self.cursor.feed(data)
                self.sink.write(data)
                return
            self.cursor.feed(data[:end])
            self.sink.write(data[:end])
            self.sink.write(self.bye)
            self.state = _SEALED
            data = data[end:]
        self.cursor.feed(data)  # sealed: watch for the source's close frame, drop the rest

    def seal(self, bye: bytes) -> None:
        if self.state != _RELAY:
            return
        if self.cursor.closed:  # the source's own close frame already went through
            self.state = _SEALED
        elif self.cursor.at_boundary:
            self.sink.write(bye)
            self.state = _SEALED
        else:
            self.bye = bye
            self.state = _SEALING


class Tunnel:
    """Both ends of one proxied WebSocket, from the 101 on.

    GatewayProtocol calls `from_client`, `client_lost`, `client_paused/resumed` and
    (on shutdown) `shutdown`; UpstreamSide calls the upstream counterparts.
    """

    def __init__(self, side: Any, target: Any, gauge: Any, idle: float, early: bytes,
                 start_timeout: float) -> None:
        """`side` is the upstream end (handlers.websocket.UpstreamSide) with the 101 read;
        `target.active` was counted for it and is given back when the tunnel ends."""
        loop = asyncio.get_running_loop()
        self.up = side
        self.target = target
        self.gauge = gauge
        self.idle = idle
        self.early = early  # what the client sent right after its request head
        self.client: Any = None
        self.proto: Any = None
        self.to_up = _Pipe(side.transport)
        self.to_client: _Pipe | None = None
        self.clock = loop.time
        self.call_later = loop.call_later
        self.last = self.clock()
        self.opened = False
        self.closing = False
        self.finished = False
        # until `start` runs, the timer guards against a 101 that never reached the client
        self.timer: asyncio.TimerHandle | None = loop.call_later(start_timeout,
                                                                 self._on_timer)

    def start(self, transport: Any, proto: Any) -> None:
        """Response.upgrade: the server has written the 101 head to the client."""
        up = self.up
        if proto.closed or up.closed:
            if not up.closed:
                up.transport.close()
            if not proto.closed:
                transport.close()
            self._finish()
            return
        self.client = transport
        self.proto = proto
        self.to_client = _Pipe(transport)
        self.opened = True
        self.gauge.inc()
        client_paused, shutting_down = proto.hand_over(self)
        up.tunnel = self
        if self.early:
            self.to_up.relay(self.early)
            self.early = b""
        for chunk in up.early:
            self.to_client.relay(chunk)
        up.early.clear()
        if not client_paused:
            up.transport.resume_reading()
        if not up.write_paused:
            proto.resume_reading()  # llhttp paused it at the upgrade
        self._arm(self.idle)
        if shutting_down:
            self.shutdown()

    # -- bytes ------------------------------------------------------------------
    def from_client(self, data: bytes) -> None:
        if self.finished:  # the other end is gone; this one is closing
            return
        self.last = self.clock()
        self.to_up.relay(data)
        if self.closing:
            self._check_closed()

    def from_upstream(self, data: bytes) -> None:
        if self.finished:
            return
        self.last = self.clock()
        assert self.to_client is not None
        self.to_client.relay(data)

    # -- flow control: pause the side whose peer cannot take more ------------------
    def client_paused(self) -> None:
        if not self.up.closed:
            self.up.transport.pause_reading()

    def client_resumed(self) -> None:
        if not self.up.closed:
            self.up.transport.resume_reading()

    def upstream_paused(self) -> None:
        if self.proto is not None:
            self.proto.pause_reading()

    def upstream_resumed(self) -> None:
        if self.proto is not None:
            self.proto.resume_reading()

    # -- endings ------------------------------------------------------------------
    def client_lost(self) -> None:
        self._finish()
        if not self.up.closed:
            self.up.transport.close()  # flushes what is queued (a close frame) first

    def upstream_lost(self) -> None:
        self._finish()
        if self.proto is not None and not self.proto.closed:
            self.client.close()

    def shutdown(self, reason: bytes = b"gateway shutting down") -> None:
        """Say 1001 (going away) to both peers, each at its next frame boundary, then
        close both ends once the client has answered, or after CLOSE_GRACE."""
        if self.closing or self.finished or self.to_client is None:
            return
        self.closing = True
        self.to_client.seal(close_frame(GOING_AWAY, reason))
        self.to_up.seal(close_frame(GOING_AWAY, reason, masked=True))
        if not self.up.closed:
            self.up.transport.resume_reading()  # the peers' answers must get through
        self.proto.resume_reading()
        self._arm(CLOSE_GRACE)
        self._check_closed()

    def _check_closed(self) -> None:
        """The close handshake with the client is done: both close frames went by."""
        to_client = self.to_client
        assert to_client is not None
        if (self.to_up.state == _SEALED and to_client.state == _SEALED
                and self.to_up.cursor.closed):
            self._close_both()

    def _close_both(self) -> None:
        if self.proto is not None and not self.proto.closed:
            self.client.close()
        if not self.up.closed:
            self.up.transport.close()

    def _arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.call_later(seconds, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.finished:
            return
        if not self.opened:  # the 101 never reached the client: nobody will use this
            self.up.transport.abort()
            self._finish()
        elif self.closing:
            self._close_both()
        else:
            quiet = self.clock() - self.last
            if quiet >= self.idle:
                self.shutdown(b"idle timeout")
            else:
                self._arm(self.idle - quiet)

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.target.active -= 1
        if self.opened:
            self.gauge.dec()
