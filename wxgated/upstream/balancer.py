"""Target selection for one upstream: smooth weighted round robin, least_conn, hash ring.

Why these algorithms:
- Smooth weighted round robin (nginx's): plain WRR sends a weight-5 target five requests
  in a row; the smooth variant interleaves them (`a a b a c a a` for 5,1,1) so a heavy
  target never gets a burst, and it needs only one integer of state per target.
- least_conn compares `active / weight` by cross-multiplication (no division, no float)
  and breaks ties with the same smooth WRR, as nginx does, so equal load still rotates.
- hash uses a consistent-hash ring (160 virtual nodes per weight unit, blake2b points,
  `bisect`): adding or removing one of N targets moves only about 1/N of the keys, and the
  points depend only on the target URL, so every worker and every instance agrees.
  An unavailable target is skipped by walking the ring clockwise; its virtual nodes have
  different successors, so its keys spread over all the remaining targets instead of
  doubling the load on one neighbour, and they come back when it recovers.

Targets are opaque objects the caller owns, with `.weight` (int ≥ 1, read once here),
`.active` (in-flight count kept by the caller), `.available` (healthy and breaker not
open) and `.key` (the target URL). `pick()` never allocates on the common path; SWRR and
least_conn are O(n) over a handful of targets (as nginx), the ring lookup is O(log n).
Balancers are rebuilt when the target list changes; they hold no per-request state.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from hashlib import blake2b
from typing import Any, Protocol
from zlib import crc32

_EMPTY: frozenset[Any] = frozenset()
VNODES_PER_WEIGHT = 160

KINDS = ("round_robin", "least_conn", "hash")


class Balancer(Protocol):
    @property
    def targets(self) -> Sequence[Any]: ...  # read-only, so a tuple attribute satisfies it

    def pick(self, req: Any, exclude: set[Any] | frozenset[Any] = _EMPTY) -> Any | None:
        """A target for `req`, avoiding `exclude` (already tried) when another is available.

        Falls back to an excluded available target rather than None; None only when no
        target is available at all.
        """


class _Weighted:
    """Targets with weights and smooth-WRR state; subclasses choose in `_select`."""

    __slots__ = ("targets", "_weights", "_current", "_only")

    def __init__(self, targets: Sequence[Any]) -> None:
        self.targets = tuple(targets)
        self._weights = [t.weight for t in self.targets]
        self._current = [0] * len(self.targets)
        self._only = self.targets[0] if len(self.targets) == 1 else None

    def pick(self, req: Any, exclude: set[Any] | frozenset[Any] = _EMPTY) -> Any | None:
        only = self._only
        if only is not None:  # one target: nothing to choose, tried or not
            return only if only.available else None
        i = self._select(exclude)
        if i < 0 and exclude:
            i = self._select(_EMPTY)
        return None if i < 0 else self.targets[i]

    def _select(self, exclude: set[Any] | frozenset[Any]) -> int:
        raise NotImplementedError


class RoundRobin(_Weighted):
    """nginx's smooth weighted round robin over the available targets."""

    __slots__ = ()

    def _select(self, exclude: set[Any] | frozenset[Any]) -> int:
        current = self._current
        weights = self._weights
        best = -1
        best_cw = 0
        total = 0
        for i, t in enumerate(self.targets):
            if not t.available or (exclude and t in exclude):
                continue
            w = weights[i]
            cw = current[i] + w
            current[i] = cw
            total += w
            if best < 0 or cw > best_cw:
                best, best_cw = i, cw
        if best >= 0:
            current[best] = best_cw - total
        return best


class LeastConn(_Weighted):
    """Fewest in-flight requests relative to weight; ties go round robin (smooth WRR)."""

    __slots__ = ()

    def _select(self, exclude: set[Any] | frozenset[Any]) -> int:
        targets = self.targets
        weights = self._weights
        best = -1
        best_active = 0
        best_w = 1
        ties = 0
        for i, t in enumerate(targets):
            if not t.available or (exclude and t in exclude):
                continue
            a = t.active
            w = weights[i]
            # a / w < best_active / best_w, without division
            if best < 0 or a * best_w < best_active * w:
                best, best_active, best_w, ties = i, a, w, 1
            elif a * best_w == best_active * w:
                ties += 1
        if ties <= 1:
            return best
        return self._swrr_among_ties(best, best_active, best_w, exclude)

    def _swrr_among_ties(
        self, first: int, active: int, weight: int, exclude: set[Any] | frozenset[Any]
    ) -> int:
        targets = self.targets
        weights = self._weights
        current = self._current
        best = -1
        best_cw = 0
        total = 0
        for i in range(first, len(targets)):
            t = targets[i]
            if not t.available or (exclude and t in exclude):
                continue
            w = weights[i]
            if t.active * weight != active * w:
                continue
            cw = current[i] + w
            current[i] = cw
            total += w
            if best < 0 or cw > best_cw:
                best, best_cw = i, cw
        current[best] = best_cw - total
        return best


_M64 = (1 << 64) - 1


def _point(data: bytes) -> int:
    """A ring point for a virtual node: built once, so a strong hash costs nothing."""
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


def _key_point(data: bytes) -> int:
    """A request key's ring position: per request, so cheap (crc32 ≈ 10× faster than
    blake2b here), spread over 64 bits by murmur3's finaliser so similar keys such as
    "openid-1" and "openid-2" land far apart. Stable across processes, unlike hash()."""
    k = crc32(data)
    k ^= k >> 16
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    return k ^ (k >> 33)


class HashRing:
    """Consistent hashing on `hash_key(req)`; requests without a key go round robin."""

    __slots__ = ("targets", "_hash_key", "_points", "_owners", "_fallback")

    def __init__(self, targets: Sequence[Any], hash_key: Callable[[Any], str | None]) -> None:
        self.targets = tuple(targets)
        self._hash_key = hash_key
        ring: list[tuple[int, int]] = []
        for idx, t in enumerate(self.targets):
            base = t.key.encode()
            for v in range(VNODES_PER_WEIGHT * t.weight):
                ring.append((_point(base + b"#" + str(v).encode()), idx))
        ring.sort()
        self._points = [p for p, _ in ring]
        self._owners = [self.targets[i] for _, i in ring]
        self._fallback = RoundRobin(self.targets)

    def pick(self, req: Any, exclude: set[Any] | frozenset[Any] = _EMPTY) -> Any | None:
        key = self._hash_key(req)
        if not key:  # a missing or empty key must not pin everyone to one target
            return self._fallback.pick(req, exclude)
        return self.lookup(key, exclude)

    def lookup(self, key: str, exclude: set[Any] | frozenset[Any] = _EMPTY) -> Any | None:
        """The first available target clockwise from `key`'s point, skipping `exclude`."""
        owners = self._owners
        n = len(owners)
        if n == 0:
            return None
        i = bisect_right(self._points, _key_point(key.encode()))
        fallback = None
        # Expected steps ≈ n / (available points): short unless nearly everything is down.
        for step in range(n):
            t = owners[(i + step) % n]
            if not t.available:
                continue
            if exclude and t in exclude:
                if fallback is None:
                    fallback = t
                continue
            return t
        return fallback


def make_balancer(
    kind: str,
    targets: Sequence[Any],
    hash_key: Callable[[Any], str | None] | None = None,
) -> Balancer:
    """Build the balancer named by an upstream's `balance:` key."""
    for t in targets:
        if not isinstance(t.weight, int) or t.weight < 1:
            raise ValueError(f"target {t.key}: weight must be an integer ≥ 1")
    if kind == "round_robin":
        return RoundRobin(targets)
    if kind == "least_conn":
        return LeastConn(targets)
    if kind == "hash":
        if hash_key is None:
            raise ValueError("balance: hash needs a hash key")
        return HashRing(targets, hash_key)
    raise ValueError(f"unknown balance kind {kind!r}; expected one of {', '.join(KINDS)}")
