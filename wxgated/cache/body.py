"""Bounded buffering of a response body, falling back to streaming past the bound.

Caching and envelope wrapping need a body whole, but only up to a limit: a larger
answer must still reach the client, streamed, without being held in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from wxgated.http.message import Response


async def buffer_upto(resp: Response, limit: int) -> bool:
    """True when `resp.body` now holds the whole body (at most `limit` bytes).

    False when it is larger: `resp.stream` then replays what was read and goes on with
    the rest, so the caller can pass the response on untouched.
    """
    stream = resp.stream
    if stream is None:
        return len(resp.body) <= limit
    declared = resp.header(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return False
    parts: list[bytes] = []
    size = 0
    it = stream.__aiter__()
    async for chunk in it:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            resp.stream = _replay(parts, it)
            return False
    resp.stream = None
    resp.body = b"".join(parts)
    resp.remove_header(b"transfer-encoding")
    resp.set_header(b"content-length", str(size).encode())
    return True


async def _replay(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        for chunk in head:
            yield chunk
        async for chunk in rest:
            yield chunk
    finally:
        close = getattr(rest, "aclose", None)
        if close is not None:
            await close()
