"""The Redis rate-limit store: the same GCRA as `gcra.py`, as one atomic Lua script.

One round trip per decision (EVALSHA, EVAL only after Redis lost the script), so N
gateway instances sharing one Redis admit exactly `burst` requests between them. The
clock is Redis's own (`TIME`): gateway hosts whose clocks disagree still agree on the
bucket. Keys are `{rl:<route>:<client>}`, one hash tag each, so Redis Cluster places
every bucket in one slot; each key expires when its bucket is full again, so idle
clients leave nothing behind.
"""

from __future__ import annotations

from wxgated.limits.gcra import Decision, Rate
from wxgated.state.redis import RedisState, Script

# KEYS[1]: bucket. ARGV[1]: interval µs, ARGV[2]: tolerance µs (burst * interval).
# Returns {allowed, remaining, reset_after µs, retry_after µs}; mirrors gcra.gcra().
_GCRA = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local base = now
if stored then
  local tat = tonumber(stored)
  if tat > now then base = tat end
end
local new_tat = base + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, 0, base - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((tolerance - (new_tat - now)) / interval), new_tat - now, 0}
""")

class RedisStore:
    """Decisions for one route; raises StateError (within the state timeout) on failure."""

    __slots__ = ("rate", "_state", "_prefix", "_args")

    def __init__(self, state: RedisState, rate: Rate, route: str) -> None:
        self.rate = rate
        self._state = state
        self._prefix = f"{state.prefix}{{rl:{route}:"
        self._args = (rate.interval, rate.tolerance)

    def bucket_key(self, key: str) -> str:
        return f"{self._prefix}{key}}}"

    async def decide(self, key: str) -> Decision:
        allowed, remaining, reset_us, retry_us = await self._state.run_script(
            _GCRA, [self.bucket_key(key)], self._args
        )
        return (allowed == 1, self.rate.burst, remaining, reset_us / 1e6, retry_us / 1e6)
