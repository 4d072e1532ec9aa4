"""Retry rules: what is tried again, and how the budget stops retry storms."""

from __future__ import annotations

import pytest

from wxgated.upstream.retry import IDEMPOTENT_METHODS, RetryBudget, RetryPolicy

POLICY = RetryPolicy.from_config({"attempts": 3, "on": ["connect_error", "timeout", 502, 503]})


@pytest.mark.parametrize("method", sorted(IDEMPOTENT_METHODS))
def test_idempotent_methods_are_retried(method: str) -> None:
    assert POLICY.should_retry(method, 1, None, "connect_error", True)


@pytest.mark.parametrize("method", ["POST", "PATCH", "CONNECT"])
def test_non_idempotent_methods_are_not_retried(method: str) -> None:
    assert not POLICY.should_retry(method, 1, 502, None, True)
    assert not POLICY.should_retry(method, 1, None, "timeout", True)


def test_methods_setting_overrides_the_default() -> None:
    p = RetryPolicy.from_config({"attempts": 2, "on": [503], "methods": ["post", "GET"]})
    assert p.should_retry("POST", 1, 503, None, True)
    assert not p.should_retry("DELETE", 1, 503, None, True)


def test_only_listed_causes_are_retried() -> None:
    assert POLICY.should_retry("GET", 1, 502, None, True)
    assert POLICY.should_retry("GET", 1, 503, None, True)
    assert POLICY.should_retry("GET", 1, None, "timeout", True)
    assert not POLICY.should_retry("GET", 1, 500, None, True)  # not listed
    assert not POLICY.should_retry("GET", 1, 504, None, True)
    assert not POLICY.should_retry("GET", 1, 200, None, True)
    assert not POLICY.should_retry("GET", 1, None, "broken", True)  # not a retry cause
    only_connect = RetryPolicy.from_config({"attempts": 3, "on": ["connect_error"]})
    assert only_connect.should_retry("GET", 1, None, "connect_error", True)
    assert not only_connect.should_retry("GET", 1, None, "timeout", True)
    assert not only_connect.should_retry("GET", 1, 503, None, True)


def test_attempts_counts_the_first_try() -> None:
    assert POLICY.should_retry("GET", 1, 502, None, True)
    assert POLICY.should_retry("GET", 2, 502, None, True)
    assert not POLICY.should_retry("GET", 3, 502, None, True)  # 3 tries made
    single = RetryPolicy.from_config({"attempts": 1, "on": [502]})
    assert not single.should_retry("GET", 1, 502, None, True)


def test_streamed_body_already_sent_is_never_retried() -> None:
    assert not POLICY.should_retry("PUT", 1, None, "connect_error", body_replayable=False)
    assert not POLICY.should_retry("GET", 1, 502, None, body_replayable=False)
    permissive = RetryPolicy.from_config({"attempts": 5, "on": [502], "methods": ["POST"]})
    assert not permissive.should_retry("POST", 1, 502, None, body_replayable=False)
    assert permissive.should_retry("POST", 1, 502, None, body_replayable=True)


def test_deadline_stops_retries_and_shortens_the_last_try() -> None:
    p = RetryPolicy.from_config({"attempts": 5, "on": ["timeout"], "per_try_timeout": "2s", "deadline": "5s"})
    assert p.should_retry("GET", 1, None, "timeout", True, elapsed=2.0)
    assert not p.should_retry("GET", 3, None, "timeout", True, elapsed=5.0)
    assert p.try_timeout(0.0) == 2.0
    assert p.try_timeout(4.0) == pytest.approx(1.0)  # only 1 s of the deadline is left
    assert p.try_timeout(5.5) <= 0
    assert RetryPolicy(per_try_timeout=3.0).try_timeout(100.0) == 3.0
    assert RetryPolicy().try_timeout(100.0) is None


def test_from_config_reads_the_retries_mapping() -> None:
    p = RetryPolicy.from_config({"attempts": 2, "on": ["timeout", 503], "budget": 0.1,
                                 "min_retries_per_sec": 1, "per_try_timeout": "250ms"})
    assert (p.attempts, p.on, p.per_try_timeout) == (2, frozenset({"timeout", 503}), 0.25)
    assert p.methods == IDEMPOTENT_METHODS and p.deadline is None
    budget = RetryBudget.for_policy(p)
    for _ in range(100):
        budget.record_request(1.0)
    assert spend_all(budget, 1.0) == 20  # 0.1 × 100 + 1/s × 10 s
    default = RetryPolicy.from_config({})
    assert default.attempts == 1 and default.on == frozenset({"connect_error"})


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown cause"):
        RetryPolicy.from_config({"attempts": 2, "on": ["connect_eror"]})
    with pytest.raises(ValueError, match="HTTP status"):
        RetryPolicy.from_config({"attempts": 2, "on": [5030]})
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy.from_config({"attempts": 0})


def spend_all(budget: RetryBudget, now: float, limit: int = 10_000) -> int:
    n = 0
    while n < limit and budget.try_spend(now):
        n += 1
    return n


def test_budget_caps_retries_at_ratio_of_requests_plus_floor() -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_sec=0.0)
    for _ in range(100):
        budget.record_request(50.0)
    assert spend_all(budget, 50.0) == 20
    budget.record_request(50.0)  # each request earns 0.2 of a retry
    for _ in range(4):
        budget.record_request(50.0)
    assert spend_all(budget, 50.0) == 1


def test_budget_floor_lets_a_quiet_upstream_retry() -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_sec=3.0, window=10.0)
    budget.record_request(50.0)
    assert spend_all(budget, 50.0) == 30  # 3/s over 10 s, plus 0.2 (not a whole retry)


def test_budget_when_every_target_fails() -> None:
    """1000 failing requests, 3 attempts each: retries stay near 20%, not 200%."""
    policy = RetryPolicy.from_config({"attempts": 3, "on": [503]})
    budget = RetryBudget(ratio=0.2, min_retries_per_sec=3.0)
    tries = 0
    now = 10.0
    for i in range(1000):
        now = 10.0 + i * 0.005  # 200 req/s for 5 s
        budget.record_request(now)
        attempt = 1
        tries += 1
        while policy.should_retry("GET", attempt, 503, None, True) and budget.try_spend(now):
            attempt += 1
            tries += 1
    retries = tries - 1000
    assert retries <= 0.2 * 1000 + 30
    assert retries >= 0.2 * 1000  # the budget is used, not just refused


def test_budget_recovers_as_the_window_slides() -> None:
    budget = RetryBudget(ratio=0.0, min_retries_per_sec=1.0, window=10.0)
    assert spend_all(budget, 100.0) == 10
    assert spend_all(budget, 105.0) == 0
    assert spend_all(budget, 111.0) == 10  # the old retries left the window
    assert budget.snapshot(111.0)["retries"] == 10
