"""The one current WeChat access_token per appid, shared by every gateway instance.

WeChat wants one owner of the refresh: cgi-bin/token invalidates the previous token
(after a 5-minute overlap) and both endpoints have daily quotas. So the token lives in
the state backend (`wx:token:{appid}`), one instance refreshes under a state lock while
the others keep using the old, still valid token or poll briefly for the new one, and
inside a process concurrent callers share one in-flight refresh task.

If the state backend is down the keeper still works process-locally (with stable_token
that is harmless: WeChat hands every caller the same token). If WeChat is down while the
current token is merely near expiry, the current token keeps being served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

from wxgated.state.base import StateBackend, StateError
from wxgated.wechat.client import JsonDict, WeChatClient, WeChatError

T = TypeVar("T")
log = logging.getLogger("wxgated.wechat.tokens")

# WeChat's "this access_token is invalid / expired / not the latest" answers.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# stable_token with force_refresh: WeChat allows few a day, and not twice within 30 s.
FORCE_INTERVAL = 30.0


class Token(NamedTuple):
    value: str
    refresh_at: float  # wall clock: from here on, fetch a new one
    expires_at: float  # wall clock: unusable from here on

    def fresh(self, now: float, bad: str | None) -> bool:
        return now < self.refresh_at and self.value != bad

    def usable(self, now: float, bad: str | None) -> bool:
        return now < self.expires_at and self.value != bad


class TokenKeeper:
    def __init__(self, client: WeChatClient, state: StateBackend, appid: str,
                 use_stable: bool = True, refresh_margin: float = 300.0,
                 lock_ttl: float | None = None, poll: float = 0.05) -> None:
        self.client = client
        self.state = state
        self.use_stable = use_stable
        self.margin = refresh_margin
        self.key = f"wx:token:{appid}"
        self.lock_key = f"wx:token-lock:{appid}"
        self.force_key = f"wx:token-force:{appid}"
        self.lock_ttl = lock_ttl or client.max_call_seconds * 2 + 1.0
        self.poll = poll
        self._local: Token | None = None
        self._flight: asyncio.Task[str] | None = None
        self._forced_at = float("-inf")  # monotonic time of this process's last force

    def __repr__(self) -> str:
        return f"TokenKeeper(key={self.key!r}, stable={self.use_stable})"

    async def get(self) -> str:
        """The current access_token, refreshed ahead of expiry."""
        local = self._local
        if local is not None and time.time() < local.refresh_at:
            return local.value
        return await self._obtain(None)

    async def current(self) -> tuple[str, int]:
        """(access_token, seconds until it expires), for the admin endpoint."""
        token = await self.get()
        known = self._local
        if known is None or known.value != token:  # served the shared, near-expiry token
            try:
                known = await self._read()
            except StateError:
                known = None
        left = known.expires_at - time.time() if known is not None and known.value == token \
            else 0.0
        return token, max(0, int(left))

    async def invalidate(self, bad_token: str) -> str:
        """WeChat rejected `bad_token` (40001/42001): a token other than it, fetched once."""
        if self._local is not None and self._local.value == bad_token:
            self._local = None
        return await self._obtain(bad_token)

    async def call_with_token(self, fn: Callable[[str], Awaitable[T]]) -> T:
        """`await fn(token)`; when WeChat calls the token bad, refresh once and retry once."""
        token = await self.get()
        try:
            return await fn(token)
        except WeChatError as err:
            if err.errcode not in TOKEN_ERRCODES:
                raise
        return await fn(await self.invalidate(token))

    async def _obtain(self, bad: str | None) -> str:
        # Join the refresh in flight unless it produced the very token we know is bad.
        while (flight := self._flight) is not None:
            token = await asyncio.shield(flight)
            if token != bad:
                return token
            if self._flight is flight:
                break
        task = asyncio.ensure_future(self._refresh(bad))
        self._flight = task
        task.add_done_callback(self._landed)
        return await asyncio.shield(task)

    def _landed(self, task: asyncio.Task[str]) -> None:
        if self._flight is task:
            self._flight = None
        if not task.cancelled():
            task.exception()  # retrieved here so an abandoned failure is not reported

    async def _refresh(self, bad: str | None) -> str:
        deadline = time.monotonic() + self.lock_ttl + self.client.max_call_seconds
        while True:
            try:
                current = await self._read()
            except StateError as err:
                log.warning("state backend unavailable, refreshing access_token locally: %s", err)
                return await self._fetch_and_store(self._local, bad, store=False)
            now = time.time()
            if current is not None and current.fresh(now, bad):
                self._local = current
                return current.value
            token = await self._try_refresh_locked(current, bad)
            if token is not None:
                return token
            if current is not None and current.usable(now, bad):
                return current.value  # near expiry: another instance is refreshing it
            if time.monotonic() > deadline:
                raise WeChatError(-1, "timed out waiting for the access_token refresh",
                                  self._api, unreachable=True)
            await asyncio.sleep(self.poll)

    async def _try_refresh_locked(self, seen: Token | None, bad: str | None) -> str | None:
        """Refresh under the state lock; None when another instance holds it."""
        try:
            lease = await self.state.acquire_lock(self.lock_key, self.lock_ttl)
        except StateError:
            return await self._fetch_and_store(seen, bad, store=False)
        if lease is None:
            return None
        try:
            current = await self._read()  # it may have landed between our read and the lock
            if current is not None and current.fresh(time.time(), bad):
                self._local = current
                return current.value
            return await self._fetch_and_store(current, bad, store=True)
        finally:
            try:
                await self.state.release_lock(self.lock_key, lease)
            except StateError:
                pass  # the lease expires on its own

    @property
    def _api(self) -> str:
        return "stable_token" if self.use_stable else "token"

    async def _fetch_and_store(self, current: Token | None, bad: str | None, store: bool) -> str:
        try:
            doc = await self._fetch(bad)
        except WeChatError:
            if current is not None and current.usable(time.time(), bad):
                log.warning("access_token refresh failed; the current token is still valid")
                return current.value
            raise
        now = time.time()
        life = max(1, int(doc["expires_in"]))
        token = Token(doc["access_token"], now + max(life - self.margin, life / 2), now + life)
        self._local = token
        if store:
            payload = {"access_token": token.value, "refresh_at": token.refresh_at,
                       "expires_at": token.expires_at}
            try:
                await self.state.set(self.key, json.dumps(payload).encode(), life)
            except StateError as err:
                log.warning("could not share the new access_token: %s", err)
        return token.value

    async def _fetch(self, bad: str | None) -> JsonDict:
        if not self.use_stable:
            return await self.client.get_token()
        doc = await self.client.get_stable_token()
        if bad is not None and doc["access_token"] == bad:
            # WeChat still hands out the token it rejects: only a forced refresh helps
            # (limited to 20 a day, 30 s apart, so only ever on a confirmed bad token).
            if not await self._may_force():
                raise WeChatError(40001, "access_token rejected; force_refresh was used less "
                                  f"than {FORCE_INTERVAL:.0f} s ago", "stable_token")
            doc = await self.client.get_stable_token(force_refresh=True)
        return doc

    async def _may_force(self) -> bool:
        """Claim the once-per-FORCE_INTERVAL force_refresh, for this process and, through
        a state lock left to expire, for every instance sharing the state backend."""
        now = time.monotonic()
        if now - self._forced_at < FORCE_INTERVAL:
            return False
        try:
            if await self.state.acquire_lock(self.force_key, FORCE_INTERVAL) is None:
                return False
        except StateError:
            pass  # the state backend is down: the process-local limit still holds
        self._forced_at = now
        log.warning("WeChat rejected a current access_token: forcing a refresh "
                    "(at most once per %.0f s)", FORCE_INTERVAL)
        return True

    async def _read(self) -> Token | None:
        raw = await self.state.get(self.key)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            return Token(str(doc["access_token"]), float(doc["refresh_at"]),
                         float(doc["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None
