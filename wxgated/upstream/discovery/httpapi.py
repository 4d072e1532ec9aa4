"""The one HTTP exchange the registry providers (Consul, Nacos) need: a request, a JSON
answer, and every transport failure turned into `DiscoveryError`.

Why a session per call: a provider is built when a config compiles (also by `wxgated
check`, outside any event loop) and dropped by a reload without a close hook, so a
long-lived aiohttp session would have no safe place to be opened or closed. A refresh
is at most one request every second or so; a fresh connection to the registry costs
nothing that matters at that rate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from wxgated.upstream.discovery.base import DiscoveryError


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any  # the decoded JSON, or the text when it is not JSON
    text: str


async def call(method: str, url: str, timeout: float, *,
               params: Mapping[str, str] | None = None,
               headers: Mapping[str, str] | None = None,
               form: Mapping[str, str] | None = None) -> Reply:
    """One request; an unreachable or hanging registry is a `DiscoveryError`.

    Any status is returned as is: what a 403 or a 404 means is the provider's call."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with aiohttp.ClientSession(timeout=client_timeout) as session, \
                session.request(method, url, params=params, headers=headers,
                                data=form) as resp:
            text = await resp.text()
            return Reply(resp.status, dict(resp.headers), _decode(text), text)
    except (TimeoutError, aiohttp.ClientError, UnicodeDecodeError) as exc:
        raise DiscoveryError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def snippet(reply: Reply) -> str:
    """The start of an error answer, for the log and `/-/upstreams`' `last_error`."""
    return f"HTTP {reply.status}: {reply.text.strip()[:200]}"
