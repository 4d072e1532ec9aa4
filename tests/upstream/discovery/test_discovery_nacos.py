"""Nacos discovery: parsing both instance-list shapes, weights, and the provider against
the stand-in (v1 and v2 paths, login, token renewal)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.nacos_standin import NacosStandin, host
from wxgated.upstream.discovery.base import DiscoveryError, Endpoint, usable
from wxgated.upstream.discovery.nacos import (
    NacosProvider,
    healthy_endpoints,
    parse_list,
    scale_weights,
)

HOSTS = [host("127.0.0.2", 80, 1.0), host("127.0.0.3", 80, 2.0)]


def test_v1_shape() -> None:
    hosts, cache = parse_list({"name": "DEFAULT_GROUP@@api", "cacheMillis": 3000,
                               "hosts": HOSTS})
    assert hosts == HOSTS and cache == 3000


def test_v2_shape_and_its_error_codes() -> None:
    hosts, cache = parse_list({"code": 0, "message": "success",
                               "data": {"cacheMillis": 5000, "hosts": HOSTS}})
    assert hosts == HOSTS and cache == 5000
    with pytest.raises(DiscoveryError, match="20004"):
        parse_list({"code": 20004, "message": "service not found", "data": None})
    with pytest.raises(DiscoveryError, match="hosts"):
        parse_list({"something": "else"})


def test_only_healthy_enabled_instances_with_a_weight() -> None:
    hosts = [host("127.0.0.2", 80), host("127.0.0.3", 80, healthy=False),
             host("127.0.0.4", 80, enabled=False), host("127.0.0.5", 80, weight=0.0)]
    assert healthy_endpoints(hosts) == (Endpoint("127.0.0.2", 80, 1),)


def test_float_weights_become_the_smallest_integers_with_the_same_ratio() -> None:
    assert scale_weights([1.0, 1.0]) == [1, 1]
    assert scale_weights([1.5, 0.5]) == [3, 1]
    assert scale_weights([0.25, 1.0]) == [1, 4]
    assert scale_weights([100.0, 0.001]) == [10000, 1]  # tiny but above 0: still 1
    assert scale_weights([]) == []


@pytest.fixture
def nacos() -> Iterator[NacosStandin]:
    server = NacosStandin(users={"gw": "pw"}).start()
    yield server
    server.close()


def provider(nacos: NacosStandin, **kw: object) -> NacosProvider:
    args: dict[str, object] = {"username": "gw", "password": "pw", **kw}
    return NacosProvider(nacos.url, "api", **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_list_with_login_on_either_path(nacos: NacosStandin, api: str) -> None:
    nacos.set_hosts("api", [host("127.0.0.2", 80, 1.5, cluster="A"),
                            host("127.0.0.3", 80, 0.5, cluster="B"),
                            host("127.0.0.4", 80, cluster="C")], namespace="dev")
    answer = await provider(nacos, api=api, namespace="dev", clusters=["A", "B"]).resolve()
    assert answer.endpoints == (Endpoint("127.0.0.2", 80, 3), Endpoint("127.0.0.3", 80, 1))
    assert answer.ttl == 1.0  # cacheMillis
    q = nacos.requests[-1]["query"]
    assert nacos.requests[-1]["path"] == f"/nacos/{api}/ns/instance/list"
    assert q["accessToken"] == "token-1" and q["healthyOnly"] == "true"
    assert q["namespaceId"] == "dev" and q["groupName"] == "DEFAULT_GROUP"
    assert q["clusterName" if api == "v2" else "clusters"] == "A,B"


async def test_the_token_is_reused_then_renewed_before_its_ttl(nacos: NacosStandin) -> None:
    nacos.token_ttl = 1
    p = provider(nacos)
    await p.resolve()
    await p.resolve()
    assert nacos.logins == 1
    await asyncio.sleep(0.85)  # past 80% of the 1 s lifetime, before it expires
    await p.resolve()
    assert nacos.logins == 2
    assert [r["query"]["accessToken"] for r in nacos.requests] == \
        ["token-1", "token-1", "token-2"]


async def test_a_403_logs_in_again_and_retries_once(nacos: NacosStandin) -> None:
    nacos.set_hosts("api", [host("127.0.0.2", 80)])
    p = provider(nacos)
    await p.resolve()
    await asyncio.to_thread(nacos.revoke_tokens)  # e.g. the server's secret key changed
    answer = await p.resolve()
    assert answer.endpoints == (Endpoint("127.0.0.2", 80),)
    assert nacos.logins == 2


async def test_wrong_credentials_or_none_are_a_failed_refresh(nacos: NacosStandin) -> None:
    with pytest.raises(DiscoveryError, match="unknown user"):
        await provider(nacos, password="nope").resolve()
    with pytest.raises(DiscoveryError, match="403"):
        await provider(nacos, username=None, password=None).resolve()


async def test_an_unknown_service_is_zero_instances(nacos: NacosStandin) -> None:
    assert (await provider(nacos).resolve()).endpoints == ()


async def test_a_server_that_is_down_is_a_failed_refresh(nacos: NacosStandin) -> None:
    nacos.stop()
    with pytest.raises(DiscoveryError):
        await provider(nacos).resolve()


def test_a_registry_host_that_could_split_a_header_is_never_a_target() -> None:
    hosts = [{"ip": ip, "port": 8080, "healthy": True, "enabled": True}
             for ip in ("10.0.0.1", "fd00::1", "svc-1.internal", "10.0.0.2\r\nx-wx-openid: o",
                        "a b", "evil/path", "")]
    got = usable(healthy_endpoints(hosts), "u")
    assert sorted(e.host for e in got) == ["10.0.0.1", "fd00::1", "svc-1.internal"]
