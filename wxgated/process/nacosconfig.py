"""The two calls of Nacos' config Open API (v1, as served by Nacos 1.x and 2.x) that a
config source needs: fetch the text, and wait for it to change.

- `GET /nacos/v1/cs/configs?dataId=&group=&tenant=` answers the raw text (200), or 404
  when there is no such config.
- `POST /nacos/v1/cs/configs/listener` with header `Long-Pulling-Timeout: 30000` and
  form `Listening-Configs=dataId^2group^2md5^2tenant^1` (^2 = the byte 2, ^1 = byte 1; the
  tenant part is left out for the public namespace) is held by the server for up to
  the timeout (Nacos answers 500 ms early) and answers an empty body when nothing
  changed, or, as soon as the content's MD5 differs from ours, the URL-encoded keys
  that changed (`dataId%02group%02tenant%01`). Then the config is fetched again.

The HTTP exchange and the login are discovery's (httpapi.call, NacosLogin): one way
to talk to Nacos in the code base. With auth on, every call carries `accessToken`; a
403 logs in again and retries once, as the discovery provider does.
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

from wxgated.process.nacosref import NacosRef
from wxgated.upstream.discovery.base import DiscoveryError
from wxgated.upstream.discovery.httpapi import Reply, call, snippet
from wxgated.upstream.discovery.nacos_auth import NacosLogin

TIMEOUT = 5.0  # a fetch, a login
LONG_POLL_MS = 30_000  # what the Nacos SDKs ask for
LONG_POLL_SLACK = 10.0  # how much longer than that we wait before calling it a hang


class NacosUnavailable(Exception):
    """No usable answer from Nacos (refused, timeout, 5xx, a refused login)."""


def content_md5(text: str) -> str:
    """What Nacos compares in the listener: the hex MD5 of the content's UTF-8 bytes."""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class NacosConfigClient:
    def __init__(self, ref: NacosRef, long_poll_ms: int = LONG_POLL_MS) -> None:
        self.ref = ref
        self.long_poll_ms = long_poll_ms
        self.configs_url = f"{ref.server}/nacos/v1/cs/configs"
        self.listener_url = f"{self.configs_url}/listener"
        self.login = NacosLogin(ref.server, ref.username, ref.password or "", TIMEOUT) \
            if ref.username else None

    def _query(self) -> dict[str, str]:
        q = {"dataId": self.ref.data_id, "group": self.ref.group}
        if self.ref.namespace:
            q["tenant"] = self.ref.namespace
        return q

    def listening_configs(self, md5: str) -> str:
        parts = [self.ref.data_id, self.ref.group, md5]
        if self.ref.namespace:
            parts.append(self.ref.namespace)
        return "\x02".join(parts) + "\x01"

    async def fetch(self) -> str | None:
        """The config's text, or None when Nacos says there is no such config (404)."""
        reply = await self._send("GET", self.configs_url, TIMEOUT, params=self._query())
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise NacosUnavailable(f"GET {self.configs_url}: {snippet(reply)}")
        return reply.text

    async def changed(self, md5: str) -> bool:
        """Hold a listener request until Nacos says our copy (`md5`) is stale (True) or
        its long-poll timeout passes without a change (False)."""
        reply = await self._send(
            "POST", self.listener_url, self.long_poll_ms / 1000 + LONG_POLL_SLACK,
            headers={"Long-Pulling-Timeout": str(self.long_poll_ms)},
            form={"Listening-Configs": self.listening_configs(md5)})
        if reply.status != 200:
            raise NacosUnavailable(f"POST {self.listener_url}: {snippet(reply)}")
        mine = (self.ref.data_id, self.ref.group)
        for line in unquote(reply.text).split("\x01"):
            fields = line.strip().split("\x02")
            if tuple(fields[:2]) == mine:
                return True
        return False

    async def _send(self, method: str, url: str, timeout: float, *,
                    params: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None,
                    form: dict[str, str] | None = None) -> Reply:
        for attempt in (1, 2):
            try:
                query = dict(params or {})
                if self.login is not None:
                    query["accessToken"] = await self.login.current()
                reply = await call(method, url, timeout, params=query, headers=headers,
                                   form=form)
            except DiscoveryError as exc:
                raise NacosUnavailable(str(exc)) from None
            if reply.status != 403 or self.login is None or attempt == 2:
                return reply
            self.login.refused()  # expired or revoked early: one fresh login, one retry
        raise AssertionError("unreachable")
