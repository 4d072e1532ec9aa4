"""Parking a coroutine on a future and waking it from a protocol callback."""

from __future__ import annotations

import asyncio


def wake(fut: asyncio.Future[None] | None) -> None:
    """Resolve a parked waiter, if there is one still waiting."""
    if fut is not None and not fut.done():
        fut.set_result(None)
