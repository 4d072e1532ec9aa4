"""GCRA, the generic cell rate algorithm: a token bucket kept as one number per key.

The bucket holds at most `burst` tokens and refills `rate` per `per`; a request takes
one. Instead of (tokens, last refill) GCRA stores the theoretical arrival time `tat`:
the moment the bucket would be full again. A request at `now` is allowed when
`max(tat, now) + interval - burst * interval <= now`, and then `tat` advances by one
interval. A key whose `tat` lies in the past is a full bucket, exactly like an absent
key, which is what lets stores drop such keys at any time.

Everything is integer microseconds so the local store and the Redis Lua script (which
mirrors `gcra` line by line) reach identical decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# (allowed, limit, remaining, reset_after, retry_after): limit is the bucket size (burst),
# remaining the tokens left after this request, reset_after the seconds until the bucket
# is full again, retry_after the seconds until one token is back (0.0 when allowed).
# A plain tuple: a NamedTuple costs a microsecond per request to build.
Decision = tuple[bool, int, int, float, float]


@dataclass(frozen=True)
class Rate:
    rate: int
    per: float  # seconds
    burst: int = 0  # 0: same as rate
    interval: int = field(init=False)  # µs between tokens
    tolerance: int = field(init=False)  # µs of debt the bucket may hold: burst * interval

    def __post_init__(self) -> None:
        if self.rate < 1 or self.per <= 0 or self.burst < 0:
            raise ValueError("rate must be >= 1, per > 0 and burst >= 1")
        if self.burst == 0:
            object.__setattr__(self, "burst", self.rate)
        interval = max(1, round(self.per * 1_000_000 / self.rate))
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "tolerance", interval * self.burst)


def gcra(tat: int, now: int, interval: int, tolerance: int, burst: int) -> tuple[int, Decision]:
    """Decide one request; returns the key's new `tat` (unchanged when refused)."""
    base = tat if tat > now else now
    new_tat = base + interval
    allow_at = new_tat - tolerance
    if now < allow_at:
        return tat, (False, burst, 0, (base - now) / 1e6, (allow_at - now) / 1e6)
    return new_tat, (True, burst, (tolerance - new_tat + now) // interval, (new_tat - now) / 1e6, 0.0)
