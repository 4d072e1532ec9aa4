"""Coarse timeouts (http/deadlines.py) on a real loop with short real waits: each fires
once, within a resolution after its deadline, and idle far deadlines keep the loop
asleep instead of sweeping every resolution."""

from __future__ import annotations

import asyncio

from wxgated.http.deadlines import Deadlines, Timed

RES = 0.02


class Conn(Timed):
    def __init__(self, log: list[tuple[str, float]], name: str) -> None:
        super().__init__()
        self.log = log
        self.name = name

    def on_deadline(self) -> None:
        self.log.append((self.name, asyncio.get_running_loop().time()))


async def test_each_deadline_fires_once_within_a_resolution() -> None:
    loop = asyncio.get_running_loop()
    d = Deadlines(RES)
    log: list[tuple[str, float]] = []
    a, b, c = Conn(log, "a"), Conn(log, "b"), Conn(log, "c")
    start = loop.time()
    d.arm(a, start + 0.05)
    d.arm(b, start + 0.10)
    d.arm(c, start + 0.05)
    d.arm(c, 0.0)  # disarmed: never fires
    await asyncio.sleep(0.4)
    assert [name for name, _ in log] == ["a", "b"]
    for name, at in log:  # never early; late by a resolution (and a busy test machine's lag)
        deadline = start + (0.05 if name == "a" else 0.10)
        assert deadline <= at <= deadline + RES + 0.2, (name, at - deadline)
    assert d.next_sweep() is None  # nothing armed: no timer
    d.close()


async def test_rearming_later_and_forgetting() -> None:
    loop = asyncio.get_running_loop()
    d = Deadlines(RES)
    log: list[tuple[str, float]] = []
    a, b = Conn(log, "a"), Conn(log, "b")
    start = loop.time()
    d.arm(a, start + 0.03)
    d.arm(a, start + 0.12)  # moved later: the early bucket's entry is stale
    d.arm(b, start + 0.03)
    d.forget(b)  # a closed connection
    await asyncio.sleep(0.08)
    assert log == []
    await asyncio.sleep(0.4)
    assert [name for name, _ in log] == ["a"]
    assert log[0][1] >= start + 0.12
    d.close()


async def test_far_deadlines_let_the_loop_sleep_and_an_earlier_one_wakes_it() -> None:
    loop = asyncio.get_running_loop()
    d = Deadlines(RES)
    log: list[tuple[str, float]] = []
    now = loop.time()
    idle = [Conn(log, f"idle{i}") for i in range(2000)]
    for i, conn in enumerate(idle):  # an hour away, over many buckets
        d.arm(conn, now + 3600 + i * RES)
    first = d.next_sweep()
    assert first is not None and first >= now + 3600  # no sweep every resolution meanwhile
    soon = Conn(log, "soon")
    d.arm(soon, loop.time() + 0.04)  # earlier than every bucket: the timer moves up
    next_sweep = d.next_sweep()
    assert next_sweep is not None and next_sweep < now + 1
    await asyncio.sleep(0.4)
    assert [name for name, _ in log] == ["soon"]
    after = d.next_sweep()
    assert after is not None and after >= now + 3600  # back to sleep until the first idle one
    d.close()
