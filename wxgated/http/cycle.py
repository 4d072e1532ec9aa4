"""A request's turn on its client connection: its answer written in order, the
keep-alive decided, the request counted, then the next one. Requests on a connection
are answered one at a time, so one Cycle per connection serves each in turn.

The gateway answers through `Cycle.answer` (the answer sink), now or later; nothing
below reaches back into the connection's parser state. A streamed answer is written by
a task of its own; a whole one in one write from the caller's callback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wxgated.http.body import RequestBody
from wxgated.http.message import Request, Response

if TYPE_CHECKING:
    from wxgated.http.server import GatewayProtocol


class Cycle:
    __slots__ = ("conn", "body")

    def __init__(self, conn: GatewayProtocol) -> None:
        self.conn = conn
        self.body: RequestBody | None = None  # the current request's, as it arrives

    def answer(self, req: Request, resp: Response) -> None:
        """The answer sink: write `resp`, then the next queued request or idle."""
        conn = self.conn
        if resp.stream is not None:
            conn.loop.create_task(self._streamed(req, resp))
            return
        body = self.body
        unread = body is not None and not body.done
        keep = conn.writer.write_now(
            req, resp, req.keep_alive and not unread and not conn.d.shutting_down)
        if self._sent(req, resp, keep, unread):
            conn.next()

    async def _streamed(self, req: Request, resp: Response) -> None:
        conn = self.conn
        keep = await conn.writer.write(req, resp, self._may_keep(req, self._unread()))
        if self._sent(req, resp, keep, self._unread()):
            conn.next()

    def _unread(self) -> bool:
        """The request's body is still on the wire: the next request can't be found
        (the connection then closes, after a linger)."""
        body = self.body
        return body is not None and not body.done

    def _may_keep(self, req: Request, unread: bool) -> bool:
        return req.keep_alive and not self.conn.d.shutting_down and not unread

    def _sent(self, req: Request, resp: Response, keep: bool, unread: bool) -> bool:
        """Count a written response; False when the connection ends with it."""
        conn = self.conn
        conn.d.done(req, resp.status, conn.bytes_in, conn.writer.bytes_out)
        conn.bytes_in = 0
        if resp.upgrade is not None and resp.status == 101:
            conn.active = False
            resp.upgrade(conn.transport, conn)
            return False
        if not keep:
            if unread:
                conn.linger()
            else:
                conn.transport.close()
            conn.closed = True
            conn.active = False
            return False
        return True
