"""Active and passive health: targets ejected and restored, and never the last one."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.support.e2e_backend import (
    Backend,
    get_many,
    healthy_gauge,
    send,
    upstream_state,
    wait_for,
)
from tests.support.gateway import GatewayProcess

# --- health ----------------------------------------------------------------------------


async def test_killed_target_no_errors_once_detected_and_back_after_recovery(
        gw: GatewayProcess, apps: dict[str, Backend]) -> None:
    h1, h2 = apps["H1"], apps["H2"]
    log: list[tuple[float, int, str]] = []
    stop = asyncio.Event()

    async def load() -> None:
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                t = time.monotonic()
                status, _, doc = await send(s, gw.url + "/killed/k")
                log.append((t, status, doc.get("name", "") if isinstance(doc, dict) else ""))
                await asyncio.sleep(0.005)

    task = asyncio.create_task(load())
    try:
        await wait_for(lambda: {n for _, _, n in log} == {"H1", "H2"}, what="both serving")
        await asyncio.to_thread(h1.stop)
        await wait_for(lambda: not upstream_state(gw, "killed")[h1.url]["available"],
                       what="H1 ejected")
        detected = time.monotonic()
        await asyncio.sleep(0.5)
        after = [(s, n) for t, s, n in log if t >= detected]
        assert len(after) > 10
        assert all(s == 200 and n == "H2" for s, n in after), after
        assert healthy_gauge(gw, "killed", h1.url) == 0
        assert healthy_gauge(gw, "killed", h2.url) == 1
        await asyncio.to_thread(h1.start)  # the same port, as a restarted service
        await wait_for(lambda: upstream_state(gw, "killed")[h1.url]["available"],
                       what="H1 back")
        back = time.monotonic()
        await wait_for(lambda: any(n == "H1" for t, _, n in log if t > back), what="H1 traffic")
    finally:
        stop.set()
        await task
    assert healthy_gauge(gw, "killed", h1.url) == 1
    assert all(s == 200 for t, s, _ in log if t > back)


async def test_active_check_ejects_on_500_and_restores(gw: GatewayProcess,
                                                       apps: dict[str, Backend]) -> None:
    h3, h4 = apps["H3"], apps["H4"]
    h3.health = 500
    try:
        await wait_for(lambda: not upstream_state(gw, "checked")[h3.url]["available"],
                       what="H3 out")
        state = upstream_state(gw, "checked")[h3.url]["health"]
        assert state["active_ok"] is False and state["healthy"] is False
        assert healthy_gauge(gw, "checked", h3.url) == 0
        assert healthy_gauge(gw, "checked", h4.url) == 1
        before = h3.hits["/c"]
        results = await get_many(gw.url + "/checked/c", 10)
        assert {(s, doc["name"]) for s, _, doc in results} == {(200, "H4")}
        assert h3.hits["/c"] == before  # no request reached the failing target
    finally:
        h3.health = 200
    await wait_for(lambda: upstream_state(gw, "checked")[h3.url]["available"], what="H3 back")
    assert healthy_gauge(gw, "checked", h3.url) == 1
    results = await get_many(gw.url + "/checked/c", 4)
    assert {doc["name"] for _, _, doc in results} == {"H3", "H4"}


async def test_failing_active_checks_never_take_out_the_last_target(
        gw: GatewayProcess, apps: dict[str, Backend]) -> None:
    h5, h6 = apps["H5"], apps["H6"]
    h5.health = h6.health = 500
    try:
        await wait_for(lambda: all(t["health"]["failed_checks"] >= 3
                                   for t in upstream_state(gw, "allfail").values()),
                       what="three failed rounds")
        state = upstream_state(gw, "allfail")
        assert sorted(t["available"] for t in state.values()) == [False, True]
        survivor = next(url for url, t in state.items() if t["available"])
        results = await get_many(gw.url + "/allfail/a", 4)
        # some traffic to the least bad target beats a certain 503 for everyone
        assert {(s, apps[doc["name"]].url) for s, _, doc in results} == {(200, survivor)}
    finally:
        h5.health = h6.health = 200
    await wait_for(lambda: all(t["available"] for t in upstream_state(gw, "allfail").values()),
                   what="both back")


async def test_passive_ejection_after_consecutive_failures(gw: GatewayProcess,
                                                          apps: dict[str, Backend]) -> None:
    p1, p2 = apps["P1"], apps["P2"]
    # no active checks here: the series still says 1 for a target that takes traffic
    assert (healthy_gauge(gw, "passive", p1.url), healthy_gauge(gw, "passive", p2.url)) == (1, 1)
    p1.status = 500
    try:
        results = await get_many(gw.url + "/passive/p", 12)
    finally:
        p1.status = 200
    assert p1.hits["/p"] == 3  # ejected at the 3rd consecutive failure
    assert [s for s, _, _ in results].count(500) == 3
    assert {doc["name"] for s, _, doc in results if s == 200} == {"P2"}
    info = upstream_state(gw, "passive")[p1.url]
    assert info["available"] is False
    assert info["health"]["ejections"] == 1 and 0 < info["health"]["ejected_for"] <= 1.0
    assert healthy_gauge(gw, "passive", p1.url) == 0
    # the ejection (base_ejection 1s × 1) runs out and P1 takes traffic again
    await asyncio.sleep(1.0)
    results = await get_many(gw.url + "/passive/p2", 4)
    assert {doc["name"] for _, _, doc in results} == {"P1", "P2"}
    assert healthy_gauge(gw, "passive", p1.url) == 1


async def test_last_healthy_target_is_never_ejected(gw: GatewayProcess,
                                                    apps: dict[str, Backend]) -> None:
    apps["L1"].status = apps["L2"].status = 500
    try:
        results = await get_many(gw.url + "/last/x", 12)
    finally:
        apps["L1"].status = apps["L2"].status = 200
    # every answer is the upstream's own 500; never a gateway 503 "no target"
    assert {(s, doc["name"] in ("L1", "L2")) for s, _, doc in results} == {(500, True)}
    state = upstream_state(gw, "last")
    assert sorted(t["available"] for t in state.values()) == [False, True]
    survivor = next(url for url, t in state.items() if t["available"])
    assert state[survivor]["health"]["ejections"] == 0
    status, _, doc = (await get_many(gw.url + "/last/y", 1))[0]
    assert status == 200 and apps[doc["name"]].url == survivor
