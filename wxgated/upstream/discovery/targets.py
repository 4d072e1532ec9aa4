"""Turning a discovered endpoint list into the live targets of an upstream.

Why it is its own object: the Upstream is rebuilt per Snapshot, but a discovered target
set changes between reloads, on the registry's schedule. `DiscoveredTargets` is kept in
the Registry (keyed by the settings that shape a Target: keepalive, TLS, breaker,
health), holds the current `Target` per URL, and on each answer:
- keeps the Target of an endpoint that is still there (its health, breaker and warm
  connections), or renews it when only its weight changed;
- drains a removed one: `Target.close()` closes its idle connections now, and busy ones
  close when their exchange ends, so in-flight requests finish;
- hands the new list to every bound Upstream (new balancer) and its health checker;
- logs the change and sets `wxgated_upstream_targets`.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from wxgated.observe.metrics import UPSTREAM_TARGETS
from wxgated.upstream.discovery.base import Endpoint
from wxgated.upstream.health import HealthGroup
from wxgated.upstream.targets import Target

log = logging.getLogger("wxgated.discovery")

MakeTarget = Callable[[str, int], Target]  # (url, weight) -> a new Target

# The live set per upstream name: only it reports `wxgated_upstream_targets`, so a set
# compiled by a failed reload never does, and a removed upstream's series goes away.
_SERVING: dict[str, DiscoveredTargets] = {}


class DiscoveredTargets:
    def __init__(self, upstream: str, make_target: MakeTarget,
                 seed: Sequence[Endpoint] | None = None, scheme: str = "http") -> None:
        self.upstream = upstream
        self.make_target = make_target
        self.scheme = scheme  # the upstream's `scheme`: http, or https with its `tls`
        self.by_url: dict[str, Target] = {}
        self.answered = False  # an answer (from any watcher) has been applied
        self.started: float | None = None  # monotonic, when its watcher first started
        self._bound: weakref.WeakSet[Any] = weakref.WeakSet()
        if seed is not None:  # the watcher was kept: its last answer is still true
            self.apply(seed)

    @property
    def targets(self) -> list[Target]:
        return list(self.by_url.values())

    def bind(self, upstream: Any) -> None:
        """Keep `upstream` (an Upstream of a live Snapshot) following this set."""
        self._bound.add(upstream)
        if self.started is None:
            self.started = time.monotonic()
        _SERVING[self.upstream] = self
        self._report()

    def apply(self, endpoints: Sequence[Endpoint]) -> None:
        """Make `endpoints` the current targets (the watcher's sink)."""
        self.answered = True
        wanted = {e.url_for(self.scheme): e for e in endpoints}
        old = self.by_url
        new: dict[str, Target] = {}
        for url, e in wanted.items():
            kept = old.get(url)
            new[url] = kept if kept is not None and kept.weight == e.weight else \
                self.make_target(url, e.weight)
        gone = [t for url, t in old.items() if new.get(url) is not t]
        if new.keys() == old.keys() and not gone:
            return
        self.by_url = new
        targets = list(new.values())
        HealthGroup([t.health for t in targets if t.health is not None])
        for up in list(self._bound):
            up.set_targets(targets)
        for t in gone:
            t.close()
        self._report()
        added = sorted(new.keys() - old.keys())
        removed = sorted(old.keys() - new.keys())
        reweighted = sorted(url for url in new.keys() & old.keys() if new[url] is not old[url])
        log.info("upstream %s targets changed: added %s, removed %s, reweighted %s, now %d",
                 self.upstream, added or "none", removed or "none", reweighted or "none",
                 len(new))

    def settled(self, timeout: float, now: float) -> bool:
        """For /readyz: answered, or waited `timeout` since the watcher started."""
        if self.answered:
            return True
        return self.started is not None and now - self.started >= timeout

    def _report(self) -> None:
        if _SERVING.get(self.upstream) is self:
            UPSTREAM_TARGETS.labels(self.upstream).set(len(self.by_url))

    def close(self) -> None:
        """Replaced (its shaping settings changed) or the upstream is gone: drain all."""
        for t in self.by_url.values():
            t.close()
        if _SERVING.get(self.upstream) is self:  # gone (a replacement binds after this)
            del _SERVING[self.upstream]
            UPSTREAM_TARGETS.remove(self.upstream)
