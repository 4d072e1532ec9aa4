"""Circuit breaker: when a target is cut off, probed and let back in.

Time is an argument of the breaker's API (callers read the clock once per request), so
these tests pass explicit instants instead of sleeping through 30 s open periods.
"""

from __future__ import annotations

import pytest

from wxgated.observe.metrics import CIRCUIT_STATE
from wxgated.upstream.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    SlidingCounter,
    classify,
    failure_rules,
)

T0 = 1000.0


def breaker(**kw) -> tuple[CircuitBreaker, list[int]]:
    changes: list[int] = []
    args = dict(window=10.0, min_requests=10, failure_ratio=0.5, open_for=30.0,
                half_open_requests=2, on_state_change=changes.append)
    args.update(kw)
    return CircuitBreaker(**args), changes


def feed(b: CircuitBreaker, ok: int, bad: int, now: float = T0) -> None:
    for _ in range(ok):
        assert b.allow(now)
        b.record(True, now)
    for _ in range(bad):
        assert b.allow(now)
        b.record(False, now)


def test_trips_at_failure_ratio_with_enough_requests() -> None:
    b, changes = breaker()
    feed(b, ok=5, bad=4)
    assert b.state == CLOSED  # 9 requests: under min_requests
    feed(b, ok=0, bad=1)  # 10 requests, 5 failed = 0.5
    assert b.state == OPEN and changes == [OPEN]
    assert not b.allow(T0 + 1)


def test_below_ratio_or_below_min_requests_stays_closed() -> None:
    b, _ = breaker()
    feed(b, ok=6, bad=4)  # 40%
    feed(b, ok=6, bad=4)
    assert b.state == CLOSED
    b2, _ = breaker(min_requests=20)
    feed(b2, ok=0, bad=19)  # all failing, but too few to judge
    assert b2.state == CLOSED and b2.allow(T0)


def test_failures_age_out_of_the_window() -> None:
    b, _ = breaker()
    feed(b, ok=0, bad=9, now=T0)
    # 11 s later those failures are outside the 10 s window: one more is not enough.
    feed(b, ok=0, bad=1, now=T0 + 11)
    assert b.state == CLOSED
    # Within the window they still count.
    b2, _ = breaker()
    feed(b2, ok=0, bad=9, now=T0)
    feed(b2, ok=0, bad=1, now=T0 + 5)
    assert b2.state == OPEN


def test_4xx_does_not_count_as_failure_by_default() -> None:
    assert classify(404, None) is False
    assert classify(429, None) is False
    assert classify(500, None) is True
    assert classify(503, None) is True
    assert classify(None, "connect_error") is True
    assert classify(None, "timeout") is True
    assert classify(502, None, failure_statuses={502, 504}) is True
    assert classify(500, None, failure_statuses={502, 504}) is False
    assert classify(None, "broken", failure_errors={"timeout"}) is False
    assert classify(None, None) is False


def test_open_then_half_open_probes_then_closed() -> None:
    b, changes = breaker()
    feed(b, ok=0, bad=10)
    assert b.state == OPEN
    assert not b.allow(T0 + 29.9)
    # after open_for: exactly half_open_requests concurrent probes
    assert b.allow(T0 + 30)
    assert b.state == HALF_OPEN
    assert b.allow(T0 + 30)
    assert not b.allow(T0 + 30)
    b.record(True, T0 + 30.1)
    assert b.state == HALF_OPEN
    b.record(True, T0 + 30.2)
    assert b.state == CLOSED
    assert changes == [OPEN, HALF_OPEN, CLOSED]
    # closed starts with a clean window: old failures do not re-trip it
    feed(b, ok=0, bad=1, now=T0 + 31)
    assert b.state == CLOSED


def test_failed_probe_reopens_for_twice_as_long_capped() -> None:
    b, _ = breaker(open_for=10.0, max_open_for=35.0)
    feed(b, ok=0, bad=10)
    now = T0
    expected = [20.0, 35.0, 35.0]  # 10 → 20 → 40 capped at 35
    now += 10
    for length in expected:
        assert b.allow(now)
        b.record(False, now)
        assert b.state == OPEN
        assert b.retry_after(now) == pytest.approx(length)
        assert not b.allow(now + length - 0.01)
        now += length
    assert b.allow(now) and b.state == HALF_OPEN


def test_default_cap_is_five_times_open_for() -> None:
    assert CircuitBreaker(open_for=30.0).max_open_for == 150.0
    assert CircuitBreaker(open_for=120.0).max_open_for == 300.0


def test_backoff_resets_only_after_a_success_streak() -> None:
    b, _ = breaker(open_for=10.0, half_open_requests=1)
    feed(b, ok=0, bad=10)  # open 10 s
    b.allow(T0 + 10)
    b.record(False, T0 + 10)  # open 20 s
    b.allow(T0 + 30)
    b.record(True, T0 + 30)  # closed, but the back-off is remembered
    assert b.state == CLOSED
    feed(b, ok=0, bad=10, now=T0 + 31)
    assert b.retry_after(T0 + 31) == pytest.approx(40.0)  # a flapping target stays out longer
    b.allow(T0 + 71)
    b.record(True, T0 + 71)
    feed(b, ok=10, bad=0, now=T0 + 72)  # min_requests successes in a row
    feed(b, ok=0, bad=10, now=T0 + 80)
    assert b.retry_after(T0 + 80) == pytest.approx(10.0)


def test_retry_after_counts_down_and_header_is_whole_seconds() -> None:
    b, _ = breaker()
    assert b.retry_after(T0) == 0.0
    feed(b, ok=0, bad=10)
    assert b.retry_after(T0 + 12.5) == pytest.approx(17.5)


def test_stragglers_do_not_decide_a_half_open_breaker() -> None:
    b, _ = breaker(half_open_requests=1)
    admitted_before_trip = 3
    for _ in range(admitted_before_trip):
        assert b.allow(T0)
    feed(b, ok=0, bad=10)
    for _ in range(admitted_before_trip):  # late answers while open change nothing
        b.record(False, T0 + 1)
    assert b.allow(T0 + 30) and b.state == HALF_OPEN
    b.record(True, T0 + 30.5)
    assert b.state == CLOSED


def test_cancelled_probe_frees_its_slot() -> None:
    b, _ = breaker(half_open_requests=1)
    feed(b, ok=0, bad=10)
    assert b.allow(T0 + 30)
    assert not b.allow(T0 + 30)
    b.cancel()
    assert b.allow(T0 + 30)


def test_lost_probes_do_not_wedge_half_open() -> None:
    b, _ = breaker(half_open_requests=1)
    feed(b, ok=0, bad=10)
    assert b.allow(T0 + 30)  # never reports back
    assert not b.allow(T0 + 40)
    assert b.allow(T0 + 60)  # after another open_for, a new probe goes out


def test_blocked_agrees_with_allow() -> None:
    b, _ = breaker(half_open_requests=1)
    assert not b.blocked(T0)
    feed(b, ok=0, bad=10)
    assert b.blocked(T0 + 29)
    assert not b.blocked(T0 + 30)  # would admit a probe
    assert b.state == OPEN  # blocked() changes nothing
    assert b.allow(T0 + 30)
    assert b.blocked(T0 + 30)


def test_state_changes_drive_the_circuit_metric() -> None:
    child = CIRCUIT_STATE.labels("test-breaker-up", "http://t1")
    b = CircuitBreaker(min_requests=2, failure_ratio=0.5, open_for=5.0, half_open_requests=1,
                       on_state_change=child.set)
    feed(b, ok=0, bad=2)
    assert child._value.get() == 2
    b.allow(T0 + 5)
    assert child._value.get() == 1
    b.record(True, T0 + 5)
    assert child._value.get() == 0


def test_sliding_counter_slides_bucket_by_bucket() -> None:
    w = SlidingCounter(10.0, buckets=10)
    w.add(0.5, 1, 1)
    w.add(3.5, 2, 0)
    assert (w.sum_a, w.sum_b) == (3, 1)
    w.advance(10.9)  # bucket [0,1) has left the window
    assert (w.sum_a, w.sum_b) == (2, 0)
    w.advance(12.9)
    assert (w.sum_a, w.sum_b) == (2, 0)
    w.advance(13.0)  # bucket [3,4) has left too
    assert (w.sum_a, w.sum_b) == (0, 0)
    w.add(100.0, 5)
    w.add(1000.0, 1)  # a long idle gap clears everything
    assert w.sum_a == 1


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_ratio=0)
    with pytest.raises(ValueError):
        CircuitBreaker(min_requests=0)


def test_from_config_and_failure_rules() -> None:
    b = CircuitBreaker.from_config({"window": "5s", "min_requests": 4, "failure_ratio": 1,
                                    "open_for": "2s", "half_open_requests": 1})
    feed(b, ok=0, bad=4)
    assert b.state == OPEN and b.retry_after(T0) == 2.0
    assert b.max_open_for == 10.0
    assert CircuitBreaker.from_config({"max_open_for": "1m"}).max_open_for == 60.0
    statuses, errors = failure_rules({"failure_statuses": [502, "504"],
                                      "failure_errors": ["timeout"]})
    assert classify(502, None, statuses, errors) and not classify(503, None, statuses, errors)
    assert classify(None, "timeout", statuses, errors)
    assert not classify(None, "connect_error", statuses, errors)
    statuses, errors = failure_rules(None)
    assert classify(599, None, statuses, errors) and classify(None, "broken", statuses, errors)
