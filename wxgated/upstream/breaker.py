"""Circuit breaker per target (closed → open → half-open → closed).

Why it works this way:
- The failure ratio is measured over a sliding *time* window made of fixed buckets
  (`SlidingCounter`, 10 per window). Recording is O(1) amortised and allocation-free,
  and old outcomes age out on their own; a count-based window (last N calls) would let
  a quiet target stay tripped by failures from an hour ago.
- `min_requests` keeps one failed call out of two from tripping a lightly used target.
- An open breaker answers at once (the caller sends a 503 with `Retry-After` and makes no
  upstream call). After `open_for` it admits at most `half_open_requests` concurrent
  probes; all must succeed to close. A failed probe re-opens for twice as long (capped
  at `max_open_for`), so a target that keeps failing is probed less and less often. The
  back-off resets only after `min_requests` consecutive successes once closed, so a
  target that flaps right after closing does not start again at the short period.
- What counts as a failure is the caller's call (`classify`): statuses ≥ 500, timeouts and
  connection errors by default — never a 4xx, which is the client's fault.
- Time is passed in (`now`, from `time.monotonic()`), read once per request by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any

CLOSED = 0
HALF_OPEN = 1
OPEN = 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}

DEFAULT_FAILURE_STATUSES: frozenset[int] = frozenset(range(500, 600))
CONNECT_ERROR = "connect_error"
TIMEOUT = "timeout"


def classify(
    status: int | None,
    error: str | None,
    failure_statuses: Container[int] = DEFAULT_FAILURE_STATUSES,
    failure_errors: Container[str] | None = None,
) -> bool:
    """True when an upstream attempt counts as a failure for breakers and health.

    `error` names a transport failure ("connect_error", "timeout", ...): every error
    counts unless `failure_errors` narrows it. Otherwise the status decides.
    """
    if error is not None:
        return failure_errors is None or error in failure_errors
    return status is not None and status in failure_statuses


class SlidingCounter:
    """Two counters (`a`, `b`) summed over the last `window` seconds, in fixed buckets.

    The window slides one bucket at a time, so it covers between `window - window/buckets`
    and `window` seconds of history: close enough for a breaker, and O(1) per event.
    """

    __slots__ = ("_width", "_n", "_a", "_b", "_head", "sum_a", "sum_b")

    def __init__(self, window: float, buckets: int = 10) -> None:
        if window <= 0 or buckets < 1:
            raise ValueError("window and buckets must be positive")
        self._width = window / buckets
        self._n = buckets
        self._a = [0] * buckets
        self._b = [0] * buckets
        self._head = -1  # absolute index of the newest bucket; -1 before the first event
        self.sum_a = 0
        self.sum_b = 0

    def advance(self, now: float) -> int:
        """Drop buckets older than the window; the slot for `now`."""
        idx = int(now // self._width)
        head = self._head
        n = self._n
        if idx > head:
            if head < 0 or idx - head >= n:
                self.clear()
            else:
                a, b = self._a, self._b
                for i in range(head + 1, idx + 1):
                    s = i % n
                    self.sum_a -= a[s]
                    self.sum_b -= b[s]
                    a[s] = b[s] = 0
            self._head = idx
        elif idx < head:  # never with a monotonic clock; count it in the newest bucket
            idx = head
        return idx % n

    def add(self, now: float, a: int = 0, b: int = 0) -> None:
        s = self.advance(now)
        if a:
            self._a[s] += a
            self.sum_a += a
        if b:
            self._b[s] += b
            self.sum_b += b

    def clear(self) -> None:
        for i in range(self._n):
            self._a[i] = 0
            self._b[i] = 0
        self.sum_a = self.sum_b = 0


class CircuitBreaker:
    """One target's breaker. `allow()` before the call, `record()` after it.

    A caller that got `allow() == True` must end with exactly one `record()` or
    `cancel()` (when the attempt ended without an upstream verdict, e.g. the client left),
    or a half-open probe slot stays taken until the probes are considered stale.
    """

    __slots__ = (
        "window", "min_requests", "failure_ratio", "open_for", "half_open_requests",
        "max_open_for", "on_state_change", "_state", "_counts", "_open_until",
        "_trips", "_probes", "_probe_ok", "_half_open_at", "_streak",
    )

    def __init__(
        self,
        window: float = 10.0,
        min_requests: int = 20,
        failure_ratio: float = 0.5,
        open_for: float = 30.0,
        half_open_requests: int = 3,
        max_open_for: float | None = None,
        on_state_change: Callable[[int], None] | None = None,
    ) -> None:
        if not 0 < failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if min_requests < 1 or half_open_requests < 1 or open_for <= 0:
            raise ValueError("min_requests, half_open_requests, open_for must be positive")
        self.window = window
        self.min_requests = min_requests
        self.failure_ratio = failure_ratio
        self.open_for = open_for
        self.half_open_requests = half_open_requests
        self.max_open_for = max(
            open_for, max_open_for if max_open_for is not None else min(5 * open_for, 300.0)
        )
        self.on_state_change = on_state_change
        self._state = CLOSED
        self._counts = SlidingCounter(window)  # a = requests, b = failures
        self._open_until = 0.0
        self._trips = 0  # consecutive trips without a success streak: the back-off exponent
        self._probes = 0  # half-open probes in flight
        self._probe_ok = 0  # half-open probes that succeeded
        self._half_open_at = 0.0
        self._streak = 0  # consecutive successes while closed

    @classmethod
    def from_config(
        cls, cfg: Mapping[str, Any], on_state_change: Callable[[int], None] | None = None
    ) -> CircuitBreaker:
        """From an upstream's `circuit_breaker:` mapping (missing keys take defaults)."""
        from wxgated.config.spec import duration

        open_for = duration(cfg.get("open_for"), 30.0)
        max_open = cfg.get("max_open_for")
        return cls(
            window=duration(cfg.get("window"), 10.0),
            min_requests=int(cfg.get("min_requests", 20)),
            failure_ratio=float(cfg.get("failure_ratio", 0.5)),
            open_for=open_for,
            half_open_requests=int(cfg.get("half_open_requests", 3)),
            max_open_for=None if max_open is None else duration(max_open, open_for),
            on_state_change=on_state_change,
        )

    @property
    def state(self) -> int:
        """CLOSED, HALF_OPEN or OPEN (an elapsed OPEN turns HALF_OPEN on the next allow)."""
        return self._state

    def allow(self, now: float) -> bool:
        """May a request go to this target now? Takes a probe slot when half-open."""
        state = self._state
        if state == CLOSED:
            return True
        if state == OPEN:
            if now < self._open_until:
                return False
            self._to_half_open(now)
        if self._probes >= self.half_open_requests:
            if now - self._half_open_at < self.open_for:
                return False
            # Probes that never reported back (lost tasks): start a fresh probe round.
            self._probes = self._probe_ok = 0
            self._half_open_at = now
        self._probes += 1
        return True

    def blocked(self, now: float) -> bool:
        """True when `allow(now)` would refuse; no side effects (for `target.available`)."""
        state = self._state
        if state == CLOSED:
            return False
        if state == OPEN:
            return now < self._open_until
        return self._probes >= self.half_open_requests and now - self._half_open_at < self.open_for

    def record(self, success: bool, now: float) -> None:
        """The outcome of an allowed request (see `classify`)."""
        state = self._state
        if state == CLOSED:
            self._record_closed(success, now)
        elif state == HALF_OPEN:
            if self._probes == 0:
                return  # a straggler admitted before the trip, not a probe
            self._probes -= 1
            if not success:
                self._trip(now)
            else:
                self._probe_ok += 1
                if self._probe_ok >= self.half_open_requests:
                    self._close()
        # OPEN: stragglers from before the trip change nothing.

    def cancel(self) -> None:
        """An allowed request ended without a verdict: give back its probe slot."""
        if self._state == HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def retry_after(self, now: float) -> float:
        """Seconds until the breaker will take a request again (0 when it would now)."""
        if self._state == OPEN:
            return max(0.0, self._open_until - now)
        if self.blocked(now):
            return max(0.0, self._half_open_at + self.open_for - now)
        return 0.0

    def snapshot(self, now: float) -> dict[str, object]:
        """State for `/-/upstreams`."""
        return {
            "state": STATE_NAMES[self._state],
            "requests": self._counts.sum_a,
            "failures": self._counts.sum_b,
            "retry_after": round(self.retry_after(now), 3),
            "open_for": self._current_open_for(),
        }

    def _record_closed(self, success: bool, now: float) -> None:
        counts = self._counts
        if success:
            counts.add(now, 1, 0)
            self._streak += 1
            if self._trips and self._streak >= self.min_requests:
                self._trips = 0
            return
        counts.add(now, 1, 1)
        self._streak = 0
        total = counts.sum_a
        if total >= self.min_requests and counts.sum_b >= self.failure_ratio * total:
            self._trip(now)

    def _current_open_for(self) -> float:
        return min(self.open_for * (2 ** min(self._trips, 30)), self.max_open_for)

    def _trip(self, now: float) -> None:
        self._open_until = now + self._current_open_for()
        self._trips += 1
        self._probes = self._probe_ok = 0
        self._streak = 0
        self._set(OPEN)

    def _to_half_open(self, now: float) -> None:
        self._probes = self._probe_ok = 0
        self._half_open_at = now
        self._set(HALF_OPEN)

    def _close(self) -> None:
        self._counts.clear()
        self._streak = 0
        self._set(CLOSED)

    def _set(self, state: int) -> None:
        if state != self._state:
            self._state = state
            if self.on_state_change is not None:
                self.on_state_change(state)


_RANGE = re.compile(r"^\s*(\d{3})\s*-\s*(\d{3})\s*$")
_CLASS = re.compile(r"^\s*([1-5])xx\s*$", re.IGNORECASE)


def parse_statuses(spec: Any) -> frozenset[int]:
    """Expected statuses from config: 200, "200-399", "2xx", or a list of those."""
    if spec is None:
        return frozenset(range(200, 400))
    items = spec if isinstance(spec, list | tuple | set | frozenset | range) else [spec]
    out: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            out.add(item)
            continue
        text = str(item)
        m = _RANGE.match(text)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise ValueError(f"status range {text!r} is backwards")
            out.update(range(lo, hi + 1))
            continue
        m = _CLASS.match(text)
        if m:
            base = int(m.group(1)) * 100
            out.update(range(base, base + 100))
            continue
        if text.strip().isdigit():
            out.add(int(text))
            continue
        raise ValueError(f"bad status {item!r}: use 200, '200-399' or '2xx'")
    if not out or any(s < 100 or s > 599 for s in out):
        raise ValueError("expected statuses must be within 100-599")
    return frozenset(out)


def failure_rules(
    cfg: Mapping[str, Any] | None,
) -> tuple[frozenset[int], frozenset[str] | None]:
    """(`failure_statuses`, `failure_errors`) for `classify`, from `circuit_breaker:`.

    Errors: None (every transport error counts) unless the config lists them.
    """
    if not cfg:
        return DEFAULT_FAILURE_STATUSES, None
    statuses = cfg.get("failure_statuses")
    errors = cfg.get("failure_errors")
    return (
        DEFAULT_FAILURE_STATUSES if statuses is None else parse_statuses(statuses),
        None if errors is None else frozenset(errors),
    )


def min_retry_after(breakers: Iterable[CircuitBreaker], now: float) -> float:
    """The soonest any of `breakers` takes traffic again: the upstream's `Retry-After`."""
    return min((b.retry_after(now) for b in breakers), default=0.0)
