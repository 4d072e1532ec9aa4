"""Black-box: `wxgated run` with upstreams discovered from Consul and Nacos stand-ins
(tests/support/consul_standin.py, tests/support/nacos_standin.py), both with auth on: Consul refuses a
query without the ACL token, Nacos one without a logged-in accessToken.

Backends on 127.0.0.2, .3, .4 answer /who with their address (as in
test_e2e_discovery.py), so traffic is observed per target while the registry changes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.consul_standin import ConsulStandin, instance
from tests.support.discovery import Backends, get, spread, until, upstream_view
from tests.support.gateway import metric_value
from tests.support.nacos_standin import NacosStandin, host
from tests.support.servers import free_port

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
TOKEN = "b1ac0f6e-consul-acl"


class Registry:
    """One provider's stand-in behind the same few verbs, so each behaviour is one test
    run against both."""

    kind = ""

    def __init__(self) -> None:
        self.server: Any = None

    def set(self, port: int, hosts: list[tuple[str, float]]) -> None:
        raise NotImplementedError

    def block(self, **extra: Any) -> dict[str, Any]:
        raise NotImplementedError


class Consul(Registry):
    kind = "consul"

    def __init__(self) -> None:
        self.server = ConsulStandin(token=TOKEN).start()

    def set(self, port: int, hosts: list[tuple[str, float]]) -> None:
        self.server.set_instances("api", [instance(h, port, weight=int(w)) for h, w in hosts])

    def block(self, **extra: Any) -> dict[str, Any]:
        return {"server": self.server.url, "service": "api", "token": TOKEN, "wait": "2s",
                **extra}


class Nacos(Registry):
    kind = "nacos"

    def __init__(self) -> None:
        self.server = NacosStandin(users={"gateway": "pw"}, cache_millis=1000).start()

    def set(self, port: int, hosts: list[tuple[str, float]]) -> None:
        self.server.set_hosts("api", [host(h, port, w) for h, w in hosts])

    def block(self, **extra: Any) -> dict[str, Any]:
        return {"server": self.server.url, "service": "api", "username": "gateway",
                "password": "pw", **extra}


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backends, int]]:
    b = Backends()
    port = free_port()
    for h in HOSTS:
        b.serve(h, port)
    yield b, port
    b.stop()


@pytest.fixture(params=[Consul, Nacos], ids=["consul", "nacos"])
def registry(request: pytest.FixtureRequest) -> Iterator[Registry]:
    r: Registry = request.param()
    yield r
    r.server.close()


def config(registry: Registry, **extra: Any) -> dict[str, Any]:
    return {"server": {"discovery_ready_timeout": "2s"},
            "upstreams": {"api": {"discovery": {registry.kind: registry.block(**extra)},
                                  "timeouts": {"connect": "500ms", "read": "5s"}}},
            "routes": [{"name": "who", "match": {"path": "/who"}, "upstream": "api"}]}


def test_traffic_follows_the_registry_1_3_2(gateway: Any, registry: Registry,
                                            backends: tuple[Backends, int]) -> None:
    _, port = backends
    registry.set(port, [(HOSTS[0], 1)])
    gw = gateway(config(registry))
    assert set(spread(gw, 6)) == {HOSTS[0]}
    registry.set(port, [(h, 1) for h in HOSTS])
    until(lambda: set(spread(gw, 9)) == set(HOSTS))
    registry.set(port, [(h, 1) for h in HOSTS[1:]])
    until(lambda: set(spread(gw, 9)) == set(HOSTS[1:]))
    view = upstream_view(gw)
    assert view["source"] == registry.kind
    assert view["discovery"]["last_result"] == "ok"
    assert sorted(t["url"] for t in view["targets"]) == \
        [f"http://{h}:{port}" for h in HOSTS[1:]]
    assert metric_value(gw.metrics(), "wxgated_discovery_refresh_total", upstream="api",
                        provider=registry.kind, result="ok") >= 3


def test_auth_is_used(gateway: Any, registry: Registry,
                      backends: tuple[Backends, int]) -> None:
    """Consul: every query carries X-Consul-Token, and after the first they block (index
    + wait). Nacos: one login, and every list carries its accessToken."""
    _, port = backends
    registry.set(port, [(HOSTS[0], 1)])
    gw = gateway(config(registry))
    time.sleep(2.5)  # a few refresh rounds
    assert set(spread(gw, 3)) == {HOSTS[0]}
    seen = registry.server.requests
    assert len(seen) >= 2
    if isinstance(registry, Consul):
        assert all(r["token"] == TOKEN for r in seen)
        assert all(r["query"].get("wait") == "2s" for r in seen[1:])
        assert len(seen) <= 4  # held by the server, not polling every min_ttl
    else:
        assert registry.server.logins == 1
        assert all(r["query"].get("accessToken") == "token-1" for r in seen)


def test_wrong_credentials_are_refused_and_reported(gateway: Any, registry: Registry,
                                                    backends: tuple[Backends, int]) -> None:
    _, port = backends
    registry.set(port, [(HOSTS[0], 1)])
    wrong = {"token": "not-the-token"} if registry.kind == "consul" else {"password": "nope"}
    gw = gateway(config(registry, **wrong))  # ready after discovery_ready_timeout
    status, body = get(gw.url + "/who")
    assert status == 503 and json.loads(body)["code"] == 503
    view = upstream_view(gw)["discovery"]
    assert view["last_result"] == "error"
    assert "403" in view["last_error"]


def test_a_registry_outage_keeps_the_last_targets(gateway: Any, registry: Registry,
                                                  backends: tuple[Backends, int]) -> None:
    _, port = backends
    registry.set(port, [(h, 1) for h in HOSTS[:2]])
    gw = gateway(config(registry))
    assert set(spread(gw, 6)) == set(HOSTS[:2])
    registry.server.stop()
    until(lambda: upstream_view(gw)["discovery"]["last_result"] == "error")
    assert set(spread(gw, 10)) == set(HOSTS[:2])
    assert "keeping 2 target(s)" in gw.stderr()
    registry.server.start()  # back, with a change made meanwhile
    registry.set(port, [(HOSTS[2], 1)])
    until(lambda: set(spread(gw, 4)) == {HOSTS[2]}, timeout=12)


def test_zero_instances_is_a_503_then_recovers(gateway: Any, registry: Registry,
                                               backends: tuple[Backends, int]) -> None:
    _, port = backends
    registry.set(port, [(HOSTS[0], 1)])
    gw = gateway(config(registry))
    registry.set(port, [])
    until(lambda: get(gw.url + "/who")[0] == 503)
    assert json.loads(get(gw.url + "/who")[1])["code"] == 503
    assert upstream_view(gw)["discovery"]["last_result"] == "empty"
    assert metric_value(gw.metrics(), "wxgated_upstream_targets", upstream="api") == 0
    registry.set(port, [(HOSTS[1], 1)])
    until(lambda: get(gw.url + "/who") == (200, f"{HOSTS[1]}:{port}"))


def test_registry_weights_are_balancer_weights(gateway: Any, registry: Registry,
                                               backends: tuple[Backends, int]) -> None:
    _, port = backends
    if isinstance(registry, Nacos):  # floats; weight 0 means no traffic at all
        registry.set(port, [(HOSTS[0], 1.5), (HOSTS[1], 0.5), (HOSTS[2], 0.0)])
        expected = {HOSTS[0]: 3, HOSTS[1]: 1}
    else:
        registry.set(port, [(HOSTS[0], 3), (HOSTS[1], 1)])
        expected = {HOSTS[0]: 3, HOSTS[1]: 1}
    gw = gateway(config(registry))
    assert spread(gw, 40) == Counter({h: 10 * w for h, w in expected.items()})
    weights = {t["url"]: t["weight"] for t in upstream_view(gw)["targets"]}
    assert weights == {f"http://{h}:{port}": w for h, w in expected.items()}
