"""Target health: active HTTP checks and passive ejection, per target.

Why it works this way:
- Two signals, one verdict. Active checks (a GET on a health path, off the hot path)
  catch a dead target before users do; passive ejection catches a target that answers
  the health path but fails real requests. `healthy(now)` is a couple of attribute reads,
  so the balancer can ask it on every pick.
- Thresholds on *consecutive* results (`unhealthy_after`, `healthy_after`) stop one lost
  probe or one lucky 200 from flapping a target in and out.
- Passive ejection lasts `base × ejection count` (capped): a target that keeps failing is
  kept out longer each time, and the count decays after clean periods so an old incident
  does not punish it forever.
- The last healthy target of an upstream is never taken out, by passive ejection or by
  failed active checks (`HealthGroup.can_eject`):
  when everything looks bad, some traffic to the least bad target beats a certain 503.
- Ejection ends on a timer, which nobody signals; `healthy(now)` notices the expiry
  itself, so the `on_change` callback (the metric) follows without a timer task.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp

from wxgated.background import Background
from wxgated.config.spec import duration
from wxgated.observe.metrics import TARGET_HEALTHY
from wxgated.upstream.breaker import parse_statuses

__all__ = ["ActiveChecker", "HealthGroup", "TargetHealth", "health_gauge", "parse_statuses"]

log = logging.getLogger(__name__)

DEFAULT_EXPECT: range = range(200, 400)


class TargetHealth:
    """Health of one target. Kept in the registry so it survives reloads."""

    __slots__ = (
        "healthy_after", "unhealthy_after", "passive_threshold", "base_ejection",
        "max_ejection", "ejection_decay", "on_change", "_active_ok", "_passes",
        "_fails", "_consecutive", "_ejected_until", "_ejections", "_ejection_end",
        "_reported", "group",
    )

    def __init__(
        self,
        healthy_after: int = 2,
        unhealthy_after: int = 3,
        passive_threshold: int = 5,
        base_ejection: float = 30.0,
        max_ejection: float = 300.0,
        ejection_decay: float = 60.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if min(healthy_after, unhealthy_after, passive_threshold) < 1:
            raise ValueError("health thresholds must be ≥ 1")
        self.healthy_after = healthy_after
        self.unhealthy_after = unhealthy_after
        self.passive_threshold = passive_threshold
        self.base_ejection = base_ejection
        self.max_ejection = max_ejection
        self.ejection_decay = ejection_decay
        self.on_change = on_change
        self._active_ok = True  # a new target takes traffic until checks say otherwise
        self._passes = 0
        self._fails = 0
        self._consecutive = 0  # consecutive passive failures
        self._ejected_until = 0.0  # 0.0 when not ejected
        self._ejections = 0  # the ejection multiplier
        self._ejection_end = 0.0
        self._reported = True  # the last verdict passed to on_change
        self.group: HealthGroup | None = None  # set by the upstream's newest HealthGroup

    @classmethod
    def from_config(
        cls,
        health_check: Mapping[str, Any] | None,
        passive: Mapping[str, Any] | None,
        on_change: Callable[[bool], None] | None = None,
    ) -> TargetHealth:
        """From an upstream's `health_check:` and `passive_health:` mappings."""
        active = health_check or {}
        passive = passive or {}
        enabled = bool(passive.get("enabled", True))
        return cls(
            healthy_after=int(active.get("healthy_after", 2)),
            unhealthy_after=int(active.get("unhealthy_after", 3)),
            passive_threshold=int(passive.get("consecutive_failures", 5)) if enabled
            else sys.maxsize,
            base_ejection=duration(passive.get("base_ejection"), 30.0),
            max_ejection=duration(passive.get("max_ejection"), 300.0),
            ejection_decay=duration(passive.get("ejection_decay"), 60.0),
            on_change=on_change,
        )

    def healthy(self, now: float) -> bool:
        """Does the target take traffic? Hot path: O(1), no allocation."""
        if self._ejected_until:
            if now < self._ejected_until:
                return False
            self._ejected_until = 0.0
            self._notify()
        return self._active_ok

    @property
    def ejections(self) -> int:
        return self._ejections

    def record_active(self, passed: bool) -> bool:
        """Feed one active check result; True when the active verdict flipped."""
        if passed:
            self._fails = 0
            self._passes += 1
            if not self._active_ok and self._passes >= self.healthy_after:
                self._active_ok = True
                self._notify()
                return True
        else:
            self._passes = 0
            self._fails += 1
            if self._active_ok and self._fails >= self.unhealthy_after:
                group = self.group
                if group is not None and not group.can_eject(self):
                    return False  # the last healthy target stays in; out once another is back
                self._active_ok = False
                self._notify()
                return True
        return False

    def record_passive(
        self, success: bool, now: float, group: HealthGroup | None = None
    ) -> bool:
        """Feed one real request's outcome; True when this failure ejected the target.

        The last-healthy guard uses `group`, else the HealthGroup this target joined last.
        """
        if success:
            self._consecutive = 0
            return False
        self._consecutive += 1
        if self._consecutive < self.passive_threshold or self._ejected_until:
            return False
        if group is None:
            group = self.group
        if group is not None and not group.can_eject(self, now):
            return False  # the last healthy target stays in; the count stays at threshold
        self.eject(now)
        return True

    def eject(self, now: float) -> float:
        """Take the target out; returns the ejection length in seconds."""
        if self._ejections and self.ejection_decay > 0 and self._ejection_end:
            clean = now - self._ejection_end
            if clean > 0:
                self._ejections = max(0, self._ejections - int(clean // self.ejection_decay))
        self._ejections += 1
        length = min(self.base_ejection * self._ejections, self.max_ejection)
        self._ejected_until = now + length
        self._ejection_end = self._ejected_until
        self._consecutive = 0
        self._notify()
        return length

    def snapshot(self, now: float) -> dict[str, Any]:
        """State for `/-/upstreams`."""
        return {
            "healthy": self.healthy(now),
            "active_ok": self._active_ok,
            "ejected_for": round(max(0.0, self._ejected_until - now), 3),
            "ejections": self._ejections,
            "failed_checks": self._fails,
        }

    def _notify(self) -> None:
        verdict = self._active_ok and not self._ejected_until
        if verdict != self._reported:
            self._reported = verdict
            if self.on_change is not None:
                self.on_change(verdict)


class HealthGroup:
    """The targets of one upstream, so one target's ejection can see the others.

    Building one attaches it to its members (`member.group`), so `record_passive` calls
    that do not pass a group still honour "never eject the last healthy target"; after
    a reload the newest group (the current target set) is the one that counts.
    """

    __slots__ = ("members",)

    def __init__(self, members: Iterable[TargetHealth]) -> None:
        self.members = tuple(members)
        for m in self.members:
            m.group = self

    def can_eject(self, target: TargetHealth, now: float | None = None) -> bool:
        """False when `target` is the last healthy member: it stays in."""
        if now is None:
            now = time.monotonic()
        for m in self.members:
            if m is not target and m.healthy(now):
                return True
        return False

    def record_passive(self, target: TargetHealth, success: bool, now: float) -> bool:
        return target.record_passive(success, now, self)


def health_gauge(upstream: str, target: str) -> Callable[[bool], None]:
    """An `on_change` that sets `wxgated_upstream_target_healthy{upstream,target}`.

    The series starts at 1: a new TargetHealth takes traffic, and `on_change` only fires
    on a change, so a gauge left at the default 0 would report a healthy target ejected.
    """
    child = TARGET_HEALTHY.labels(upstream, target)
    child.set(1)

    def update(healthy: bool) -> None:
        child.set(1 if healthy else 0)

    return update


class HealthTarget(Protocol):
    key: str  # the target's base URL, e.g. "http://10.0.0.5:8080"
    health: TargetHealth


class ActiveChecker:
    """Periodic GET `target.key + path` for each target, feeding its TargetHealth.

    Runs as one asyncio task on its own aiohttp session (the checks are few and off the
    hot path, so aiohttp's convenience costs nothing that matters). Redirects are not
    followed: a 3xx is a verdict, by default a pass. All targets are checked
    concurrently each round, so one hanging target delays nobody beyond `timeout`.
    """

    def __init__(
        self,
        upstream_name: str,
        targets: Sequence[HealthTarget],
        path: str = "/healthz",
        interval: float = 5.0,
        timeout: float = 1.0,
        expect_status: Container[int] = DEFAULT_EXPECT,
        on_change: Callable[[HealthTarget, bool], None] | None = None,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be positive")
        self.upstream_name = upstream_name
        self.targets = tuple(targets)
        self.path = path if path.startswith("/") else "/" + path
        self.interval = interval
        self.timeout = timeout
        self.expect_status = expect_status
        self.on_change = on_change
        self.retarget(targets)
        self._loop_task = Background()
        self.rounds = 0  # completed check rounds (for /-/upstreams and tests)

    def retarget(self, targets: Sequence[HealthTarget]) -> None:
        """Check `targets` from the next round on (service discovery changed them)."""
        self.targets = tuple(targets)
        self._urls = [t.key.rstrip("/") + self.path for t in self.targets]
        self._gauges = [TARGET_HEALTHY.labels(self.upstream_name, t.key) for t in self.targets]
        self._last = [t.health.healthy(time.monotonic()) for t in self.targets]

    @classmethod
    def from_config(
        cls,
        upstream_name: str,
        targets: Sequence[HealthTarget],
        cfg: Mapping[str, Any],
        on_change: Callable[[HealthTarget, bool], None] | None = None,
    ) -> ActiveChecker:
        """From an upstream's `health_check:` mapping."""
        return cls(
            upstream_name,
            targets,
            path=cfg.get("path", "/healthz"),
            interval=duration(cfg.get("interval"), 5.0),
            timeout=duration(cfg.get("timeout"), 1.0),
            expect_status=parse_statuses(cfg.get("expect_status")),
            on_change=on_change,
        )

    def start(self) -> None:
        """Start checking (needs a running loop). Idempotent."""
        self._loop_task.start(self._run, f"health:{self.upstream_name}")

    def close(self) -> None:
        """Stop checking; safe to call from sync code (the Registry does)."""
        self._loop_task.close()

    async def aclose(self) -> None:
        await self._loop_task.aclose()

    async def check_once(self, session: aiohttp.ClientSession) -> list[bool]:
        """One round: every target checked, results fed in, metric and callback updated."""
        # one round checks the targets it started with, even if discovery retargets meanwhile
        targets, urls, gauges, last = self.targets, self._urls, self._gauges, self._last
        results = await asyncio.gather(*(self._probe(session, u, t)
                                         for u, t in zip(urls, targets, strict=True)))
        now = time.monotonic()
        for i, (t, passed) in enumerate(zip(targets, results, strict=True)):
            t.health.record_active(passed)
            healthy = t.health.healthy(now)  # also notices an ejection that ran out
            gauges[i].set(1 if healthy else 0)
            if healthy != last[i]:
                last[i] = healthy
                if self.on_change is not None:
                    self.on_change(t, healthy)
        self.rounds += 1
        return list(results)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=60)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, auto_decompress=False
        ) as session:
            loop = asyncio.get_running_loop()
            while True:
                started = loop.time()
                try:
                    await self.check_once(session)
                except Exception:  # a bug in a callback must not stop health checking
                    log.exception("health check round failed for upstream %s", self.upstream_name)
                await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    async def _probe(self, session: aiohttp.ClientSession, url: str, target: Any) -> bool:
        # an https target is probed as it is proxied to: its upstream's `tls` (ca_file,
        # verify) and server_name, not the system defaults for the address in its URL
        pool = getattr(target, "pool", None)
        tls: dict[str, Any] = {} if pool is None or pool.ssl is None else {
            "ssl": pool.ssl, "server_hostname": pool.server_hostname}
        try:
            async with session.get(url, allow_redirects=False, **tls) as resp:
                return resp.status in self.expect_status
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return False
