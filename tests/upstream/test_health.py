"""Target health: active checks against real upstreams, passive ejection, the last target."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tests.support.servers import free_port
from wxgated.observe.metrics import REGISTRY
from wxgated.upstream.health import (
    ActiveChecker,
    HealthGroup,
    TargetHealth,
    health_gauge,
    parse_statuses,
)


@dataclass(eq=False)
class Tgt:
    key: str
    health: TargetHealth = field(default_factory=TargetHealth)


class Backend:
    """An upstream whose /healthz answers `status`; counts the checks it receives."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.hits = 0
        self.delay = 0.0
        self.app = web.Application()
        self.app.router.add_get("/healthz", self.healthz)

    async def healthz(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if 300 <= self.status < 400:
            raise web.HTTPFound("/nowhere")
        return web.Response(status=self.status, text="x")

    def flip(self, status: int) -> int:
        self.status = status
        return self.hits


async def until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def gauge(upstream: str, target: str) -> float | None:
    return REGISTRY.get_sample_value(
        "wxgated_upstream_target_healthy", {"upstream": upstream, "target": target}
    )


async def test_active_checks_flip_after_thresholds(serve) -> None:
    backend = Backend()
    t = Tgt(await serve(backend.app), TargetHealth(unhealthy_after=3, healthy_after=2))
    changes: list[tuple[bool, int]] = []
    flipped_at = 0
    checker = ActiveChecker(
        "svc-flip", [t], path="/healthz", interval=0.05, timeout=1.0,
        on_change=lambda tgt, ok: changes.append((ok, backend.hits - flipped_at)),
    )
    checker.start()
    try:
        await until(lambda: checker.rounds >= 2)
        assert t.health.healthy(time.monotonic()) and gauge("svc-flip", t.key) == 1
        flipped_at = backend.flip(500)
        await until(lambda: changes)
        assert changes == [(False, 3)]  # unhealthy exactly at the 3rd failed check
        assert not t.health.healthy(time.monotonic())
        assert gauge("svc-flip", t.key) == 0
        flipped_at = backend.flip(200)
        await until(lambda: len(changes) == 2)
        assert changes[1] == (True, 2)  # back after 2 passing checks
        assert gauge("svc-flip", t.key) == 1
    finally:
        await checker.aclose()


async def test_unreachable_and_hanging_targets_fail_checks(serve) -> None:
    slow = Backend()
    slow.delay = 1.0
    dead = Tgt(f"http://127.0.0.1:{free_port()}", TargetHealth(unhealthy_after=2))
    hanging = Tgt(await serve(slow.app), TargetHealth(unhealthy_after=2))
    fine_backend = Backend()
    fine = Tgt(await serve(fine_backend.app), TargetHealth(unhealthy_after=2))
    checker = ActiveChecker("svc-dead", [dead, hanging, fine], interval=0.05, timeout=0.1)
    checker.start()
    try:
        await until(lambda: checker.rounds >= 2)
        now = time.monotonic()
        assert not dead.health.healthy(now)
        assert not hanging.health.healthy(now)
        assert fine.health.healthy(now)
        assert fine_backend.hits >= 2
    finally:
        await checker.aclose()


async def test_expected_statuses(serve) -> None:
    redirecting, no_content = Backend(302), Backend(204)
    r = Tgt(await serve(redirecting.app), TargetHealth(unhealthy_after=1))
    n = Tgt(await serve(no_content.app), TargetHealth(unhealthy_after=1))
    default = ActiveChecker("svc-exp", [r, n], interval=0.05, timeout=1.0)
    default.start()
    await until(lambda: default.rounds >= 1)
    await default.aclose()
    now = time.monotonic()
    assert r.health.healthy(now) and n.health.healthy(now)  # 200-399 by default, no redirects
    strict = ActiveChecker.from_config(
        "svc-exp", [r, n], {"interval": "50ms", "timeout": "1s", "expect_status": ["2xx"]})
    strict.start()
    await until(lambda: strict.rounds >= 1)
    await strict.aclose()
    assert not r.health.healthy(now) and n.health.healthy(now)


async def test_close_stops_the_checks(serve) -> None:
    backend = Backend()
    checker = ActiveChecker("svc-close", [Tgt(await serve(backend.app))], interval=0.02)
    checker.start()
    await until(lambda: backend.hits >= 2)
    checker.close()  # the sync close the registry calls
    await asyncio.sleep(0.05)
    hits = backend.hits
    await asyncio.sleep(0.1)
    assert backend.hits == hits


def test_passive_ejection_grows_and_is_capped() -> None:
    h = TargetHealth(passive_threshold=5, base_ejection=30.0, max_ejection=100.0,
                     ejection_decay=0)
    now = 1000.0
    lengths = []
    for _ in range(5):
        for i in range(5):
            assert h.healthy(now)
            ejected = h.record_passive(False, now)
            assert ejected == (i == 4)
        assert not h.healthy(now)
        until_back = now
        while not h.healthy(until_back):
            until_back += 1.0
        lengths.append(until_back - now)
        now = until_back
    assert lengths == [30.0, 60.0, 90.0, 100.0, 100.0]


def test_success_resets_the_consecutive_count() -> None:
    h = TargetHealth(passive_threshold=3)
    for _ in range(10):
        h.record_passive(False, 1.0)
        h.record_passive(False, 1.0)
        h.record_passive(True, 1.0)
    assert h.healthy(1.0) and h.ejections == 0


def test_ejection_count_decays_after_clean_periods() -> None:
    h = TargetHealth(passive_threshold=1, base_ejection=30.0, ejection_decay=60.0)
    assert h.eject(0.0) == 30.0
    assert h.eject(30.0) == 60.0  # right after the first: longer
    # 60 s ejection ends at 90; two clean minutes later the multiplier has decayed away
    assert h.eject(90.0 + 125.0) == 30.0


def test_last_healthy_target_is_never_ejected() -> None:
    a, b = TargetHealth(passive_threshold=2), TargetHealth(passive_threshold=2)
    group = HealthGroup([a, b])
    assert group.record_passive(a, False, 10.0) is False
    assert group.record_passive(a, False, 10.0) is True
    assert not a.healthy(10.0)
    for _ in range(10):  # b fails too, but it is all there is left
        assert b.record_passive(False, 10.0) is False  # guard applies without passing group
    assert b.healthy(10.0)
    assert not group.can_eject(b, 10.0)
    # once a is back, b's next failure ejects it
    assert a.healthy(40.0)
    assert b.record_passive(False, 40.0) is True
    assert not b.healthy(40.0) and a.healthy(40.0)


def test_an_actively_unhealthy_target_does_not_count_as_the_spare() -> None:
    a, b = TargetHealth(unhealthy_after=1), TargetHealth(passive_threshold=1)
    HealthGroup([a, b])
    a.record_active(False)
    assert b.record_passive(False, 5.0) is False
    assert b.healthy(5.0)


def test_ejection_end_is_reported_by_healthy() -> None:
    changes: list[bool] = []
    h = TargetHealth(passive_threshold=1, base_ejection=30.0, on_change=changes.append)
    h.record_passive(False, 0.0)
    assert changes == [False]
    assert not h.healthy(29.0)
    assert h.healthy(30.0)
    assert changes == [False, True]


def test_health_gauge_follows_on_change() -> None:
    h = TargetHealth(passive_threshold=1, on_change=health_gauge("svc-gauge", "http://g"))
    h.record_passive(False, 0.0)
    assert gauge("svc-gauge", "http://g") == 0
    h.healthy(31.0)
    assert gauge("svc-gauge", "http://g") == 1


def test_parse_statuses() -> None:
    assert parse_statuses(None) == frozenset(range(200, 400))
    assert parse_statuses("200-299") == frozenset(range(200, 300))
    assert parse_statuses(["2xx", 301]) == frozenset([*range(200, 300), 301])
    assert parse_statuses(204) == frozenset({204})
    for bad in ("299-200", "abc", [700], []):
        with pytest.raises(ValueError):
            parse_statuses(bad)


def test_from_config_reads_health_check_and_passive_health() -> None:
    h = TargetHealth.from_config({"unhealthy_after": 1, "healthy_after": 1},
                                 {"consecutive_failures": 2, "base_ejection": "10s",
                                  "max_ejection": "15s"})
    h.record_active(False)
    assert not h.healthy(0.0)
    h.record_active(True)
    assert h.healthy(0.0)
    assert not h.record_passive(False, 0.0) and h.record_passive(False, 0.0)
    assert h.healthy(10.0)
    assert h.eject(10.0) == 15.0  # 2 × 10 s, capped at 15 s
    off = TargetHealth.from_config(None, {"enabled": False})
    for _ in range(1000):
        off.record_passive(False, 0.0)
    assert off.healthy(0.0)
