"""Replay protection for message pushes: a timestamp window and a seen-nonce cache.

WeChat's push signatures cover only (token, timestamp, nonce[, Encrypt]), never the
time of delivery, so a captured push verifies forever. The window bounds how old a
push may be; the nonce cache, kept in the state backend so every worker and every
gateway instance sharing it agrees, refuses the same (timestamp, nonce) twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from wxgated.http.message import HTTPError
from wxgated.state.base import StateBackend, StateError

# How long a nonce is remembered when the window is off (push_max_age: 0): something
# must bound the cache, and a day covers WeChat's retries many times over.
NO_WINDOW_TTL = 86400.0


class ReplayGuard:
    """Checks a push's timestamp and claims its nonce; raises HTTPError 403 on replay."""

    def __init__(self, state: StateBackend | None, appid: str, max_age: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._appid = appid
        self._max_age = max_age
        self._clock = clock
        # A timestamp is accepted up to max_age either side of now, so one (timestamp,
        # nonce) can verify for 2 * max_age of wall time: remember it that long.
        self._ttl = 2 * max_age if max_age > 0 else NO_WINDOW_TTL

    def check_age(self, timestamp: str) -> None:
        """403 for a timestamp outside the window (either way: clocks drift)."""
        if self._max_age <= 0:
            return
        try:
            stamp = int(timestamp)
        except ValueError:
            raise HTTPError(403, "push timestamp missing or not a number") from None
        if abs(self._clock() - stamp) > self._max_age:
            raise HTTPError(403, "push timestamp outside the accepted window (replay?)")

    def _key(self, timestamp: str, nonce: str) -> str:
        digest = hashlib.sha1(f"{timestamp}\n{nonce}".encode()).hexdigest()
        return f"wxpush:{self._appid}:{digest}"

    async def claim(self, timestamp: str, nonce: str) -> str | None:
        """Record the nonce; 403 when it was seen already. Returns the key (for
        `release`), None when no state backend is configured."""
        if self._state is None:
            return None
        key = self._key(timestamp, nonce)
        try:
            fresh = await self._state.set(key, b"1", self._ttl, nx=True)
        except StateError:
            raise HTTPError(503, "push replay cache unavailable") from None
        if not fresh:
            raise HTTPError(403, "push already seen (replayed nonce)")
        return key

    async def release(self, key: str | None) -> None:
        """Forget a nonce whose push was not delivered, so WeChat's retry of the same
        push (it retries when the answer is not a success) is not refused as a replay."""
        if key is None or self._state is None:
            return
        try:
            await self._state.delete(key)
        except StateError:
            pass  # the retry then gets a 403; WeChat gives up, as it would on a 5xx
