"""Black-box: `wxgated run` with upstreams discovered from a real dnsmasq.

Targets are real aiohttp apps on 127.0.0.2, .3, .4 (Linux routes all of 127/8 to lo),
each answering /who with its own address, so traffic is observable per target while the
records change under the running gateway.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.discovery import HOSTS, Backends, get, spread, until, upstream_view
from tests.support.dnsmasq import DnsServer
from tests.support.gateway import metric_value
from tests.support.servers import free_port

NAME = "api.svc.test"


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backends, int, int]]:
    b = Backends()
    port, srv_port = free_port(), free_port()
    for host in HOSTS:
        b.serve(host, port)
        b.serve(host, srv_port)
    yield b, port, srv_port
    b.stop()


@pytest.fixture
def dnsd(tmp_path: Path) -> Iterator[DnsServer]:
    d = tmp_path / "dns"
    d.mkdir()
    server = DnsServer(d).start()
    yield server
    server.stop()


def config(dnsd: DnsServer, dns: dict[str, Any], **server: Any) -> dict[str, Any]:
    block = {"resolvers": [dnsd.resolver], "min_ttl": "1s", "max_ttl": "2s", **dns}
    return {"server": server,
            "upstreams": {"api": {"discovery": {"dns": block},
                                  "timeouts": {"connect": "500ms", "read": "5s"}}},
            "routes": [{"name": "who", "match": {"path": "/who"}, "upstream": "api"},
                       {"name": "slow", "match": {"path": "/slow"}, "upstream": "api"}]}


def reloads(gw: Any) -> float:
    return metric_value(gw.metrics(), "wxgated_config_reloads_total", result="success")


def test_traffic_follows_the_records_1_3_2(gateway: Any, dnsd: DnsServer,
                                           backends: tuple[Backends, int, int]) -> None:
    _, port, _ = backends
    dnsd.set_hosts({NAME: [HOSTS[0]]})
    gw = gateway(config(dnsd, {"name": NAME, "port": port}))
    assert set(spread(gw, 6)) == {HOSTS[0]}
    dnsd.set_hosts({NAME: list(HOSTS)})
    until(lambda: set(spread(gw, 9)) == set(HOSTS))  # within the 1-2s refresh bound
    dnsd.set_hosts({NAME: list(HOSTS[1:])})
    until(lambda: set(spread(gw, 9)) == set(HOSTS[1:]))
    view = upstream_view(gw)
    assert view["source"] == "dns"
    assert view["discovery"]["last_result"] == "ok"
    assert view["discovery"]["last_refresh"] > time.time() - 10
    assert sorted(t["url"] for t in view["targets"]) == \
        [f"http://{h}:{port}" for h in HOSTS[1:]]
    text = gw.metrics()
    assert metric_value(text, "wxgated_upstream_targets", upstream="api") == 2
    assert metric_value(text, "wxgated_discovery_refresh_total", upstream="api",
                        provider="dns", result="ok") >= 3
    log = gw.stderr()
    assert f"added ['http://{HOSTS[1]}:{port}', 'http://{HOSTS[2]}:{port}']" in log
    assert f"removed ['http://{HOSTS[0]}:{port}']" in log


def test_a_dns_outage_keeps_the_last_targets(gateway: Any, dnsd: DnsServer,
                                             backends: tuple[Backends, int, int]) -> None:
    _, port, _ = backends
    dnsd.set_hosts({NAME: list(HOSTS[:2])})
    gw = gateway(config(dnsd, {"name": NAME, "port": port}))
    dnsd.stop()
    until(lambda: upstream_view(gw)["discovery"]["last_result"] == "error")
    assert set(spread(gw, 10)) == set(HOSTS[:2])
    assert metric_value(gw.metrics(), "wxgated_discovery_refresh_total", upstream="api",
                        result="error") >= 1
    assert "keeping 2 target(s)" in gw.stderr()


def test_nxdomain_empties_the_pool_with_a_503_then_recovers(
        gateway: Any, dnsd: DnsServer, backends: tuple[Backends, int, int]) -> None:
    _, port, _ = backends
    dnsd.set_hosts({NAME: [HOSTS[0]]})
    gw = gateway(config(dnsd, {"name": NAME, "port": port}))
    dnsd.set_hosts({})  # NXDOMAIN: the registry says there are none
    until(lambda: get(gw.url + "/who")[0] == 503)
    status, body = get(gw.url + "/who")
    assert json.loads(body)["code"] == 503
    assert upstream_view(gw)["discovery"]["last_result"] == "empty"
    assert metric_value(gw.metrics(), "wxgated_upstream_targets", upstream="api") == 0
    dnsd.set_hosts({NAME: [HOSTS[2]]})
    until(lambda: get(gw.url + "/who") == (200, f"{HOSTS[2]}:{port}"))


def test_srv_weights_and_priority(gateway: Any, dnsd: DnsServer,
                                  backends: tuple[Backends, int, int]) -> None:
    _, _, srv_port = backends
    dnsd.set_hosts({"a.svc.test": [HOSTS[0]], "b.svc.test": [HOSTS[1]],
                    "c.svc.test": [HOSTS[2]]})
    dnsd.set_srv([("_http._tcp.api.test", "a.svc.test", srv_port, 1, 3),
                  ("_http._tcp.api.test", "b.svc.test", srv_port, 1, 1),
                  ("_http._tcp.api.test", "c.svc.test", srv_port, 2, 10)])  # backup: unused
    gw = gateway(config(dnsd, {"name": "_http._tcp.api.test", "type": "SRV"}))
    assert spread(gw, 40) == Counter({HOSTS[0]: 30, HOSTS[1]: 10})  # smooth WRR, exact
    weights = {t["url"]: t["weight"] for t in upstream_view(gw)["targets"]}
    assert weights == {f"http://{HOSTS[0]}:{srv_port}": 3, f"http://{HOSTS[1]}:{srv_port}": 1}


def test_reload_keeps_an_unchanged_watcher_and_restarts_a_changed_one(
        gateway: Any, dnsd: DnsServer, backends: tuple[Backends, int, int]) -> None:
    _, port, _ = backends
    dnsd.set_hosts({NAME: [HOSTS[0]], "other.svc.test": [HOSTS[1]]})
    cfg = config(dnsd, {"name": NAME, "port": port})
    gw = gateway(cfg)
    spread(gw, 3)
    idle = upstream_view(gw)["targets"][0]["idle_connections"]
    assert idle >= 1
    cfg["routes"].append({"name": "who2", "match": {"path": "/who2"}, "upstream": "api"})
    gw.write(cfg)
    gw.signal(signal.SIGHUP)
    until(lambda: reloads(gw) >= 1)
    view = upstream_view(gw)
    assert view["targets"][0]["idle_connections"] == idle  # same Target, same pool
    assert gw.stderr().count("targets changed") == 1  # only the first answer
    cfg["upstreams"]["api"]["discovery"]["dns"]["name"] = "other.svc.test"
    gw.write(cfg)
    gw.signal(signal.SIGHUP)
    until(lambda: reloads(gw) >= 2)
    until(lambda: set(spread(gw, 4)) == {HOSTS[1]})


def test_readyz_waits_for_the_first_answer_then_gives_up_after_the_timeout(
        gateway: Any, dnsd: DnsServer, backends: tuple[Backends, int, int]) -> None:
    _, port, _ = backends
    dnsd.stop()  # nobody answers: the first refresh fails (and keeps failing)
    gw = gateway(config(dnsd, {"name": NAME, "port": port}, discovery_ready_timeout="3s"),
                 wait=False)
    until(lambda: _readyz(gw) is not None)
    assert _readyz(gw) == 503
    started = time.monotonic()
    gw.wait_ready(timeout=10)
    assert time.monotonic() - started >= 1.5
    assert "ready without a first discovery answer for api" in gw.stderr()
    assert get(gw.url + "/who")[0] == 503  # no targets yet: the usual envelope


def _readyz(gw: Any) -> int | None:
    try:
        with urllib.request.urlopen(gw.admin + "/readyz", timeout=1) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return None


def test_a_removed_target_drains_its_in_flight_request(
        gateway: Any, dnsd: DnsServer, backends: tuple[Backends, int, int]) -> None:
    _, port, _ = backends
    dnsd.set_hosts({NAME: [HOSTS[0]]})
    gw = gateway(config(dnsd, {"name": NAME, "port": port}))
    result: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: result.append(get(gw.url + "/slow?s=3")))
    slow.start()
    time.sleep(0.3)  # the request is on 127.0.0.2 now
    dnsd.set_hosts({NAME: [HOSTS[1]]})
    until(lambda: get(gw.url + "/who") == (200, f"{HOSTS[1]}:{port}"))
    assert slow.is_alive()  # the switch happened while the request was in flight
    slow.join(10)
    assert result == [(200, f"{HOSTS[0]}:{port}")]
    assert set(spread(gw, 6)) == {HOSTS[1]}


def test_each_worker_follows_the_records(gateway: Any, dnsd: DnsServer,
                                         backends: tuple[Backends, int, int]) -> None:
    _, port, _ = backends
    dnsd.set_hosts({NAME: [HOSTS[0]]})
    gw = gateway(config(dnsd, {"name": NAME, "port": port}, workers=2))
    assert set(spread(gw, 10)) == {HOSTS[0]}  # ready means every worker had its answer
    dnsd.set_hosts({NAME: list(HOSTS[1:])})
    until(lambda: set(spread(gw, 20)) == set(HOSTS[1:]))
    until(lambda: metric_value(gw.metrics(), "wxgated_upstream_targets", upstream="api") == 2)


def test_health_checks_follow_the_discovered_targets(
        gateway: Any, dnsd: DnsServer, backends: tuple[Backends, int, int]) -> None:
    _, port, _ = backends
    dnsd.set_hosts({NAME: [HOSTS[0]]})
    cfg = config(dnsd, {"name": NAME, "port": port})
    cfg["upstreams"]["api"]["health_check"] = {"path": "/who", "interval": "200ms",
                                               "timeout": "200ms", "unhealthy_after": 1}
    gw = gateway(cfg)
    dead = "127.0.0.9"  # nothing listens there: only the active check can take it out
    dnsd.set_hosts({NAME: [HOSTS[0], dead]})
    until(lambda: len(upstream_view(gw)["targets"]) == 2)

    def dead_ejected() -> bool:
        return {t["url"]: t["available"] for t in upstream_view(gw)["targets"]} == {
            f"http://{HOSTS[0]}:{port}": True, f"http://{dead}:{port}": False}

    until(dead_ejected)
    assert set(spread(gw, 6)) == {HOSTS[0]}
