"""Request coalescing: N concurrent misses on one key make one upstream call.

The first request for a key leads: it goes upstream and publishes what it stored. The
others wait on its future and answer from that entry. When the leader ends without a
storable entry (uncacheable answer, too large, error, client gone), the waiters get None
and each goes upstream on its own: an answer that may not be shared is never shared.
Per worker process; across workers the store itself absorbs the rest.
"""

from __future__ import annotations

import asyncio

from wxgated.cache.entry import Entry


class Coalescer:
    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[Entry | None]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: str) -> asyncio.Future[Entry | None] | None:
        """The flight to wait on, or None when the caller now leads one (then it must
        call `finish`)."""
        fut = self._flights.get(key)
        if fut is not None:
            return fut
        self._flights[key] = asyncio.get_running_loop().create_future()
        return None

    def finish(self, key: str, entry: Entry | None) -> None:
        fut = self._flights.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(entry)

    @staticmethod
    async def wait(fut: asyncio.Future[Entry | None]) -> Entry | None:
        # shield: a waiter whose client goes away must not cancel the shared flight
        return await asyncio.shield(fut)

    def close(self) -> None:
        for fut in self._flights.values():
            if not fut.done():
                fut.set_result(None)
        self._flights.clear()
