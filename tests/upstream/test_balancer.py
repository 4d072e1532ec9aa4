"""Balancers: which target each request goes to."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from wxgated.upstream.balancer import HashRing, make_balancer


@dataclass(eq=False)
class T:
    key: str
    weight: int = 1
    active: int = 0
    available: bool = True


def names(balancer, n: int, req=None, exclude=frozenset()) -> str:
    return " ".join(balancer.pick(req, exclude).key for _ in range(n))


def test_smooth_wrr_matches_nginx_sequence() -> None:
    b = make_balancer("round_robin", [T("a", 5), T("b", 1), T("c", 1)])
    assert names(b, 7) == "a a b a c a a"
    assert names(b, 7) == "a a b a c a a"  # and it repeats


def test_round_robin_distribution_follows_weights() -> None:
    targets = [T("a", 3), T("b", 2), T("c", 1)]
    b = make_balancer("round_robin", targets)
    counts = Counter(b.pick(None).key for _ in range(6000))
    assert counts == {"a": 3000, "b": 2000, "c": 1000}


def test_round_robin_skips_unavailable_and_comes_back() -> None:
    a, b_, c = T("a"), T("b"), T("c")
    b = make_balancer("round_robin", [a, b_, c])
    b_.available = False
    assert set(names(b, 10).split()) == {"a", "c"}
    b_.available = True
    assert "b" in names(b, 3).split()


def test_nothing_available_gives_none() -> None:
    targets = [T("a", available=False), T("b", available=False)]
    for kind in ("round_robin", "least_conn"):
        assert make_balancer(kind, targets).pick(None) is None
    ring = make_balancer("hash", targets, lambda r: r)
    assert ring.pick("user-1") is None


@pytest.mark.parametrize("kind", ["round_robin", "least_conn", "hash"])
def test_exclude_prefers_an_untried_target_then_falls_back(kind: str) -> None:
    a, b_, c = T("a"), T("b"), T("c")
    bal = make_balancer(kind, [a, b_, c], lambda r: r)
    for _ in range(20):
        assert bal.pick("k", frozenset({a, b_})) is c
    # Everything available was tried: go to a tried target rather than give up.
    c.available = False
    assert bal.pick("k", frozenset({a, b_})) in (a, b_)
    # The unavailable target is never the fallback.
    assert bal.pick("k", frozenset({a, b_, c})) in (a, b_)


def test_least_conn_picks_fewest_in_flight() -> None:
    a, b_, c = T("a", active=4), T("b", active=1), T("c", active=3)
    bal = make_balancer("least_conn", [a, b_, c])
    assert bal.pick(None) is b_
    b_.active = 9
    assert bal.pick(None) is c


def test_least_conn_weighs_in_flight_by_weight() -> None:
    # 4 in flight on weight 4 is less loaded than 2 on weight 1.
    heavy, light = T("heavy", weight=4, active=4), T("light", weight=1, active=2)
    assert make_balancer("least_conn", [light, heavy]).pick(None) is heavy


def test_least_conn_ties_rotate() -> None:
    bal = make_balancer("least_conn", [T("a"), T("b"), T("c")])
    assert names(bal, 6) == "a b c a b c"


def test_least_conn_ties_rotate_by_weight() -> None:
    bal = make_balancer("least_conn", [T("a", 2), T("b", 1)])
    counts = Counter(bal.pick(None).key for _ in range(300))
    assert counts == {"a": 200, "b": 100}


def test_least_conn_tracks_load_as_callers_update_active() -> None:
    targets = [T("a"), T("b")]
    bal = make_balancer("least_conn", targets)
    held = [bal.pick(None) for _ in range(4)]
    for t in held:
        t.active += 1
    # a slow target keeps its requests; new ones go to the one that finishes
    targets[1].active -= 2
    assert bal.pick(None) is targets[1]


def ring_map(targets: list[T], keys: list[str]) -> dict[str, str]:
    ring = make_balancer("hash", targets, lambda r: r)
    return {k: ring.pick(k).key for k in keys}


KEYS = [f"openid-{i}" for i in range(10_000)]


def test_same_key_always_same_target() -> None:
    targets = [T(f"http://10.0.0.{i}:80") for i in range(4)]
    first = ring_map(targets, KEYS)
    # A ring built again (another worker, another instance) agrees.
    again = ring_map([T(t.key) for t in targets], KEYS)
    assert first == again
    assert len(set(first.values())) == 4


def test_adding_a_target_moves_about_one_nth_of_keys() -> None:
    three = [T(f"http://10.0.0.{i}:80") for i in range(3)]
    four = [*three, T("http://10.0.0.9:80")]
    before, after = ring_map(three, KEYS), ring_map(four, KEYS)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert 0.15 < len(moved) / len(KEYS) < 0.35  # ideal: 1/4
    assert {after[k] for k in moved} == {"http://10.0.0.9:80"}  # only to the newcomer


def test_removing_a_target_moves_only_its_keys() -> None:
    four = [T(f"http://10.0.0.{i}:80") for i in range(4)]
    before, after = ring_map(four, KEYS), ring_map(four[:3], KEYS)
    gone = four[3].key
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == gone for k in moved)
    assert 0.15 < len(moved) / len(KEYS) < 0.35
    # and they spread over all the survivors, not onto one neighbour
    assert len({after[k] for k in moved}) == 3


def test_ring_share_follows_weight() -> None:
    counts = Counter(ring_map([T("http://a", 3), T("http://b", 1)], KEYS).values())
    assert 0.68 < counts["http://a"] / len(KEYS) < 0.82


def test_ring_skips_unavailable_target_and_returns_keys_after_recovery() -> None:
    targets = [T(f"http://10.0.0.{i}:80") for i in range(3)]
    ring = make_balancer("hash", targets, lambda r: r)
    before = {k: ring.pick(k) for k in KEYS[:2000]}
    down = targets[0]
    down.available = False
    during = {k: ring.pick(k) for k in KEYS[:2000]}
    assert down not in during.values()
    assert all(during[k] is before[k] for k in before if before[k] is not down)
    down.available = True
    assert {k: ring.pick(k) for k in KEYS[:2000]} == before


def test_missing_or_empty_key_falls_back_to_round_robin() -> None:
    targets = [T("http://a"), T("http://b")]
    ring = make_balancer("hash", targets, lambda r: r)
    assert names(ring, 4, req=None) == "http://a http://b http://a http://b"
    assert names(ring, 2, req="") == "http://a http://b"  # never one shared bucket


def test_hash_key_callable_receives_the_request() -> None:
    seen = []

    def key(req: dict) -> str | None:
        seen.append(req)
        return req.get("x-user")

    ring = make_balancer("hash", [T("http://a"), T("http://b")], key)
    assert isinstance(ring, HashRing)
    req = {"x-user": "u-42"}
    picks = {ring.pick(req) for _ in range(5)}
    assert len(picks) == 1 and seen == [req] * 5


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown balance"):
        make_balancer("random", [T("a")])
    with pytest.raises(ValueError, match="hash key"):
        make_balancer("hash", [T("a")], None)
    with pytest.raises(ValueError, match="weight"):
        make_balancer("round_robin", [T("a", 0)])
