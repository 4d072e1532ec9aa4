"""Nacos login: a username/password turned into the `accessToken` every query carries.

Why on its own: the token has a lifetime (`tokenTtl`, 18000 s by default) and can be
revoked early (a restarted server with a new secret key answers 403), so the provider
needs "a token valid now" and "that one was refused, get another", nothing more.
`POST /nacos/v1/auth/login` (form `username`, `password`) answers
`{"accessToken": "...", "tokenTtl": 18000, "globalAdmin": false}` in Nacos 1.2+ and 2.x.
"""

from __future__ import annotations

import time

from wxgated.upstream.discovery.base import DiscoveryError
from wxgated.upstream.discovery.httpapi import call, snippet

RENEW_AT = 0.8  # log in again once this share of the token's lifetime has passed


class NacosLogin:
    def __init__(self, server: str, username: str, password: str, timeout: float) -> None:
        self.url = f"{server.rstrip('/')}/nacos/v1/auth/login"
        self.username = username
        self.password = password
        self.timeout = timeout
        self.token: str | None = None
        self.renew_at = 0.0  # monotonic
        self.logins = 0

    async def current(self) -> str:
        """A token that has not reached `RENEW_AT` of its lifetime (logging in if not)."""
        if self.token is None or time.monotonic() >= self.renew_at:
            await self._login()
        assert self.token is not None
        return self.token

    def refused(self) -> None:
        """The server answered 403 with our token: the next `current()` logs in again."""
        self.token = None

    async def _login(self) -> None:
        reply = await call("POST", self.url, self.timeout,
                           form={"username": self.username, "password": self.password})
        body = reply.body
        if reply.status != 200 or not isinstance(body, dict) or \
                not isinstance(body.get("accessToken"), str):
            raise DiscoveryError(f"nacos login as {self.username}: {snippet(reply)}")
        ttl = body.get("tokenTtl")
        ttl = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else 18000.0
        self.token = body["accessToken"]
        self.renew_at = time.monotonic() + ttl * RENEW_AT
        self.logins += 1
