"""Flow control of one client connection, both ways (uvicorn's `flow_control.py` has
the same shape).

Reading pauses while answers back up (a pipeline longer than the server allows, a body
nobody reads yet) and resumes once they drain; writing pauses when the transport's
buffer passes its high-water mark, and a streamed answer waits in `drain` until the
transport has taken it below the low one or the client has gone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wxgated.http.waiters import wake


class FlowControl:
    __slots__ = ("transport", "read_paused", "write_paused", "lost", "_waiter")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.read_paused = False
        self.write_paused = False
        self.lost = False  # the client is gone: nothing more is written
        self._waiter: asyncio.Future[None] | None = None

    def pause_reading(self) -> bool:
        """Stop reading; True when this call did (it was reading)."""
        if self.read_paused:
            return False
        self.read_paused = True
        self.transport.pause_reading()
        return True

    def resume_reading(self) -> bool:
        """Read again; True when this call did (it was paused)."""
        if not self.read_paused:
            return False
        self.read_paused = False
        self.transport.resume_reading()
        return True

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    def connection_lost(self) -> None:
        self.lost = True
        self._wake()

    async def drain(self) -> None:
        """Return once writing may go on (or the client is gone)."""
        while self.write_paused and not self.lost:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def _wake(self) -> None:
        w, self._waiter = self._waiter, None
        wake(w)
