"""The provider interface and the Watcher that owns one upstream's refresh loop.

Why the split: a provider only answers "what are the instances now, and for how long
may I believe it" (`Provider.resolve`). Everything that must behave the same for every
registry lives here once: the refresh cadence (the answer's TTL clamped to
min_ttl..max_ttl), backing off while the registry is unreachable, keeping the
last-known endpoints when a refresh fails (a registry outage must never empty a pool),
and the state `/-/upstreams`, `/readyz` and the metrics report.

A provider raises `DiscoveryError` when it got no usable answer (timeout, SERVFAIL,
connection refused); an authoritative "there are none" is an empty `Answer` instead,
and empties the pool on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wxgated.background import Background
from wxgated.observe.metrics import DISCOVERY_REFRESHES

log = logging.getLogger("wxgated.discovery")


@dataclass(frozen=True, order=True)
class Endpoint:
    """One instance a registry reported: where it listens and its share of traffic."""

    host: str
    port: int
    weight: int = 1

    @property
    def url(self) -> str:
        return self.url_for("http")

    def url_for(self, scheme: str) -> str:
        """The target URL; registries give host and port only, so the upstream's
        `scheme` says whether it is spoken to over TLS."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


# a host name or an IP literal: what a registry says goes into the Host line upstream
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")


def usable(endpoints: Sequence[Endpoint], upstream: str) -> list[Endpoint]:
    """The endpoints whose host can be connected to and written as a Host header: one
    check for every provider, since a registry's strings are as hostile as a client's."""
    ok = [e for e in endpoints if _HOST.fullmatch(e.host)]
    if len(ok) < len(endpoints):
        bad = sorted({repr(e.host) for e in endpoints if e not in ok})
        log.warning("discovery for upstream %s: ignoring hosts %s", upstream, ", ".join(bad))
    return ok


@dataclass(frozen=True)
class Answer:
    endpoints: tuple[Endpoint, ...]
    ttl: float  # seconds the registry lets us believe this answer


class DiscoveryError(Exception):
    """No usable answer this time; the last-known endpoints stay in force."""


class Provider(Protocol):
    kind: str  # the metric's `provider` label, e.g. "dns"
    min_ttl: float
    max_ttl: float

    async def resolve(self) -> Answer: ...


Sink = Callable[[Sequence[Endpoint]], None]


class Watcher:
    """Re-resolves one upstream's provider for as long as the upstream exists.

    Kept in the Registry under the upstream's discovery block, so a reload that leaves
    the block alone keeps the loop (and its last answer); `close()` ends it."""

    def __init__(self, upstream: str, provider: Provider) -> None:
        self.upstream = upstream
        self.provider = provider
        self.sink: Sink | None = None
        self.endpoints: tuple[Endpoint, ...] | None = None  # None: no answer yet
        self.last_refresh: float | None = None  # wall clock, for /-/upstreams
        self.last_result: str | None = None  # "ok", "empty" or "error"
        self.last_error: str | None = None
        self.failures = 0  # consecutive
        self._loop_task = Background()
        self._counters = {r: DISCOVERY_REFRESHES.labels(upstream, provider.kind, r)
                          for r in ("ok", "empty", "error")}

    def start(self, sink: Sink) -> None:
        """Deliver answers to `sink` from now on; start the loop (idempotent)."""
        self.sink = sink
        self._loop_task.start(self._run, f"discovery:{self.upstream}")

    def close(self) -> None:
        self._loop_task.close()

    async def aclose(self) -> None:
        await self._loop_task.aclose()

    async def _run(self) -> None:
        while True:
            try:
                delay = await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug applying an answer must not end discovery for good
                log.exception("discovery for upstream %s: applying an answer failed",
                              self.upstream)
                delay = self.provider.max_ttl
            await asyncio.sleep(delay)

    async def refresh(self) -> float:
        """One refresh; returns the seconds until the next one."""
        try:
            answer = await self.provider.resolve()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure keeps the last targets
            return self._failed(exc)
        self.failures = 0
        self.last_error = None
        endpoints = usable(answer.endpoints, self.upstream)
        self._record("ok" if endpoints else "empty")
        self.endpoints = tuple(sorted(endpoints))
        if self.sink is not None:
            self.sink(self.endpoints)
        return min(max(answer.ttl, self.provider.min_ttl), self.provider.max_ttl)

    def _failed(self, exc: Exception) -> float:
        """Keep the last endpoints; retry after min_ttl, doubling up to max_ttl."""
        self.failures += 1
        self.last_error = str(exc) or type(exc).__name__
        self._record("error")
        if self.failures == 1 or self.failures % 10 == 0:
            log.warning("discovery for upstream %s failed (%s); keeping %s", self.upstream,
                        self.last_error, _count(self.endpoints))
        backoff = self.provider.min_ttl * 2 ** min(self.failures - 1, 16)
        return min(backoff, self.provider.max_ttl)

    def _record(self, result: str) -> None:
        self.last_refresh = time.time()
        self.last_result = result
        self._counters[result].inc()

    def describe(self) -> dict[str, Any]:
        """The watcher's state for /-/upstreams."""
        return {"provider": self.provider.kind, "last_refresh": self.last_refresh,
                "last_result": self.last_result, "last_error": self.last_error,
                "consecutive_failures": self.failures}


def _count(endpoints: tuple[Endpoint, ...] | None) -> str:
    return "no targets (no answer yet)" if endpoints is None else f"{len(endpoints)} target(s)"
