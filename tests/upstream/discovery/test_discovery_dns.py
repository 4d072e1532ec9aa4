"""DNS discovery against a real dnsmasq: the provider, the Watcher, the target set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsmasq import DnsServer
from wxgated.upstream.discovery.base import Answer, DiscoveryError, Endpoint, Watcher
from wxgated.upstream.discovery.dns import DnsProvider, parse_resolver
from wxgated.upstream.discovery.targets import DiscoveredTargets
from wxgated.upstream.targets import Target, TargetSpec


@pytest.fixture
def dnsd(tmp_path: Path) -> Iterator[DnsServer]:
    server = DnsServer(tmp_path).start()
    yield server
    server.stop()


def provider(server: DnsServer, name: str, rtype: str = "A", port: int | None = 8080,
             **kw: float) -> DnsProvider:
    return DnsProvider(name, rtype, port if rtype != "SRV" else None, [server.resolver], **kw)


async def test_a_records_become_endpoints_on_the_port(dnsd: DnsServer) -> None:
    dnsd.set_hosts({"api.svc.test": ["127.0.0.2", "127.0.0.3"]})
    answer = await provider(dnsd, "api.svc.test").resolve()
    assert sorted(answer.endpoints) == [Endpoint("127.0.0.2", 8080), Endpoint("127.0.0.3", 8080)]
    assert answer.ttl == 1.0  # dnsmasq's --local-ttl


async def test_aaaa_records_are_bracketed_in_urls(dnsd: DnsServer) -> None:
    dnsd.set_hosts({"v6.svc.test": ["::1"]})
    answer = await provider(dnsd, "v6.svc.test", "AAAA").resolve()
    assert [e.url for e in answer.endpoints] == ["http://[::1]:8080"]


async def test_nxdomain_is_zero_instances_not_a_failure(dnsd: DnsServer) -> None:
    answer = await provider(dnsd, "gone.svc.test", min_ttl=0.5).resolve()
    assert answer == Answer((), 0.5)


async def test_a_name_without_records_of_the_type_is_zero_instances(dnsd: DnsServer) -> None:
    dnsd.set_hosts({"only6.svc.test": ["::1"]})
    answer = await provider(dnsd, "only6.svc.test", "A").resolve()
    assert answer.endpoints == ()


async def test_srv_uses_the_lowest_priority_with_weights_and_ports(dnsd: DnsServer) -> None:
    dnsd.set_hosts({"a.svc.test": ["127.0.0.2"], "b.svc.test": ["127.0.0.3"],
                    "backup.svc.test": ["127.0.0.4"]})
    dnsd.set_srv([("_http._tcp.api.test", "a.svc.test", 9001, 10, 3),
                  ("_http._tcp.api.test", "b.svc.test", 9002, 10, 0),
                  ("_http._tcp.api.test", "backup.svc.test", 9003, 20, 5)])
    answer = await provider(dnsd, "_http._tcp.api.test", "SRV").resolve()
    assert sorted(answer.endpoints) == [Endpoint("127.0.0.2", 9001, 3),
                                        Endpoint("127.0.0.3", 9002, 1)]  # weight 0 → 1


async def test_an_unreachable_server_is_a_failed_refresh(dnsd: DnsServer) -> None:
    p = provider(dnsd, "api.svc.test")
    p.timeout = 0.5
    dnsd.stop()
    with pytest.raises(DiscoveryError):
        await p.resolve()


async def test_watcher_keeps_the_last_endpoints_when_a_refresh_fails(dnsd: DnsServer) -> None:
    dnsd.set_hosts({"api.svc.test": ["127.0.0.2"]})
    p = provider(dnsd, "api.svc.test", min_ttl=1.0, max_ttl=5.0)
    p.timeout = 0.5
    seen: list[tuple[Endpoint, ...]] = []
    w = Watcher("api", p)
    w.sink = lambda eps: seen.append(tuple(eps))
    assert await w.refresh() == 1.0
    dnsd.stop()
    delays = [await w.refresh() for _ in range(4)]
    assert delays == [1.0, 2.0, 4.0, 5.0]  # doubling from min_ttl, capped at max_ttl
    assert w.endpoints == (Endpoint("127.0.0.2", 8080),)
    assert seen == [(Endpoint("127.0.0.2", 8080),)]  # failures deliver nothing
    assert w.describe()["last_result"] == "error"
    assert w.describe()["consecutive_failures"] == 4


def test_parse_resolver() -> None:
    assert (parse_resolver("10.0.0.2").address, parse_resolver("10.0.0.2").port) == \
        ("10.0.0.2", 53)
    ns = parse_resolver("[fd00::53]:5353")
    assert (ns.address, ns.port) == ("fd00::53", 5353)


def _make(url: str, weight: int) -> Target:
    return Target("api", TargetSpec(url=url, weight=weight))


class _Bound:
    def __init__(self) -> None:
        self.targets: list[Target] = []

    def set_targets(self, targets: list[Target]) -> None:
        self.targets = targets


async def test_target_set_keeps_persisting_targets_and_drains_removed_ones() -> None:
    dt = DiscoveredTargets("api", _make)
    up = _Bound()
    dt.bind(up)
    a, b = Endpoint("127.0.0.2", 80), Endpoint("127.0.0.3", 80)
    dt.apply([a, b])
    first = {t.key: t for t in up.targets}
    dt.apply([b, Endpoint("127.0.0.4", 80)])
    now = {t.key: t for t in up.targets}
    assert now["http://127.0.0.3:80"] is first["http://127.0.0.3:80"]
    assert first["http://127.0.0.2:80"].pool.closing  # drained
    assert not now["http://127.0.0.3:80"].pool.closing
    dt.apply([Endpoint("127.0.0.3", 80, 5), Endpoint("127.0.0.4", 80)])
    assert {t.key: t.weight for t in up.targets}["http://127.0.0.3:80"] == 5
    dt.apply([])
    assert up.targets == [] and dt.answered


def test_target_set_readiness_waits_for_an_answer_or_the_timeout() -> None:
    dt = DiscoveredTargets("api", _make)
    assert not dt.settled(10.0, 0.0)  # not started
    dt.bind(_Bound())
    assert dt.started is not None
    assert not dt.settled(10.0, dt.started + 1)
    assert dt.settled(10.0, dt.started + 10)
    dt.apply([])
    assert dt.settled(10.0, dt.started)


async def test_only_the_serving_set_reports_the_targets_gauge() -> None:
    from wxgated.observe.metrics import REGISTRY

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("wxgated_upstream_targets", {"upstream": "gauge"})

    live = DiscoveredTargets("gauge", _make)
    live.bind(_Bound())
    live.apply([Endpoint("127.0.0.2", 80)])
    assert gauge() == 1
    failed_reload = DiscoveredTargets("gauge", _make)
    failed_reload.apply([])
    failed_reload.close()  # compiled, never bound: the live series stays
    assert gauge() == 1
    live.close()  # the upstream is gone
    assert gauge() is None
