"""Retry rules and the per-upstream retry budget.

Why it works this way:
- Only what is safe to repeat is repeated: idempotent methods (RFC 9110 §9.2.2) unless
  the route's `methods:` says otherwise, and only when the request body can be sent
  again (empty or buffered). A streamed body that already left is gone; retrying would
  send a truncated or empty body.
- `on` names the causes worth another try: `connect_error`, `timeout`, listed statuses.
  A 500 is often a deterministic bug, so it is not retried unless listed.
- `attempts` counts every try, the first included (`attempts: 2` = at most one retry).
  Each try has its own timeout, and all tries share one deadline, so retries never
  stretch a request past what the client was promised.
- The budget (Finagle's idea): each request earns `budget_ratio` of a retry, plus a
  floor of `min_retries_per_sec` so a quiet upstream can still retry. When every
  target fails, retries stop at ~20% extra load instead of multiplying the outage by
  `attempts`. It slides over ~10 s in buckets, so spending is O(1).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wxgated.config import fragments
from wxgated.config.spec import duration
from wxgated.upstream.breaker import CONNECT_ERROR, TIMEOUT, SlidingCounter

# the schema's default for `retries.methods` (RFC 9110 §9.2.2), one list for both
IDEMPOTENT_METHODS: frozenset[str] = frozenset(fragments.IDEMPOTENT_METHODS)
ERROR_CAUSES: frozenset[str] = frozenset({CONNECT_ERROR, TIMEOUT})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 1
    on: frozenset[str | int] = frozenset({CONNECT_ERROR})
    methods: frozenset[str] = IDEMPOTENT_METHODS
    per_try_timeout: float | None = None
    deadline: float | None = None
    budget_ratio: float = 0.2
    min_retries_per_sec: float = 3.0
    _statuses: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("retries.attempts must be ≥ 1")
        for cause in self.on:
            if isinstance(cause, str) and cause not in ERROR_CAUSES:
                raise ValueError(f"retries.on: unknown cause {cause!r}")
            if isinstance(cause, int) and not 100 <= cause <= 599:
                raise ValueError(f"retries.on: {cause} is not an HTTP status")
        object.__setattr__(self, "on", frozenset(self.on))
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        statuses = frozenset(c for c in self.on if isinstance(c, int))
        object.__setattr__(self, "_statuses", statuses)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> RetryPolicy:
        """From an upstream's `retries:` mapping (missing keys take defaults)."""
        per_try = cfg.get("per_try_timeout")
        deadline = cfg.get("deadline")
        methods = cfg.get("methods")
        return cls(
            attempts=int(cfg.get("attempts", 1)),
            on=frozenset(cfg.get("on", (CONNECT_ERROR,))),
            methods=IDEMPOTENT_METHODS if methods is None else frozenset(methods),
            per_try_timeout=None if per_try is None else duration(per_try, 0.0),
            deadline=None if deadline is None else duration(deadline, 0.0),
            budget_ratio=float(cfg.get("budget", 0.2)),
            min_retries_per_sec=float(cfg.get("min_retries_per_sec", 3.0)),
        )

    def should_retry(
        self,
        method: str,
        attempt: int,
        status: int | None,
        error: str | None,
        body_replayable: bool,
        elapsed: float | None = None,
    ) -> bool:
        """After try number `attempt` (1-based) ended with `status` or `error`: try again?

        `error` is "connect_error" or "timeout" (other errors are never retried);
        `elapsed` (seconds since the first try) lets the deadline stop retries.
        The budget is separate: call `RetryBudget.try_spend()` only when this says yes.
        """
        if attempt >= self.attempts or not body_replayable or method not in self.methods:
            return False
        if elapsed is not None and self.deadline is not None and elapsed >= self.deadline:
            return False
        if error is not None:
            return error in self.on
        return status is not None and status in self._statuses

    def try_timeout(self, elapsed: float) -> float | None:
        """Timeout for the next try: the per-try timeout, cut to what the deadline leaves.

        None means no limit from retries; ≤ 0 means the deadline has passed.
        """
        per_try = self.per_try_timeout
        if self.deadline is None:
            return per_try
        left = self.deadline - elapsed
        return left if per_try is None or left < per_try else per_try


class RetryBudget:
    """Per upstream: retries allowed while retries ≤ ratio × requests + a floor (~10 s)."""

    __slots__ = ("ratio", "floor", "_window")

    def __init__(
        self, ratio: float = 0.2, min_retries_per_sec: float = 3.0, window: float = 10.0
    ) -> None:
        if ratio < 0 or min_retries_per_sec < 0 or window <= 0:
            raise ValueError("budget ratio, floor and window must be non-negative")
        self.ratio = ratio
        self.floor = min_retries_per_sec * window
        self._window = SlidingCounter(window)  # a = requests, b = retries

    @classmethod
    def for_policy(cls, policy: RetryPolicy) -> RetryBudget:
        return cls(policy.budget_ratio, policy.min_retries_per_sec)

    def record_request(self, now: float | None = None) -> None:
        """Count one original request (not a retry) to the upstream."""
        self._window.add(time.monotonic() if now is None else now, 1, 0)

    def try_spend(self, now: float | None = None) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        if now is None:
            now = time.monotonic()
        w = self._window
        w.advance(now)
        if w.sum_b + 1 > self.ratio * w.sum_a + self.floor:
            return False
        w.add(now, 0, 1)
        return True

    def snapshot(self, now: float) -> dict[str, float]:
        """Requests and retries in the current window, for `/-/upstreams`."""
        w = self._window
        w.advance(now)
        return {"requests": w.sum_a, "retries": w.sum_b,
                "allowed": round(self.ratio * w.sum_a + self.floor, 1)}
