"""Consul discovery: parsing the health API, the index rules, and the provider against
the stand-in (blocking queries, the ACL token, failures)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.support.consul_standin import ConsulStandin, instance
from wxgated.upstream.discovery.base import DiscoveryError, Endpoint
from wxgated.upstream.discovery.consul import ConsulProvider, next_index, parse_health


def test_service_address_or_the_node_address_when_empty() -> None:
    entries = [instance("127.0.0.2", 9001, node_address="10.0.0.1"),
               instance("", 9002, node_address="10.0.0.2")]
    assert parse_health(entries) == (Endpoint("127.0.0.2", 9001), Endpoint("10.0.0.2", 9002))


def test_weights_passing_is_the_balancer_weight_default_1() -> None:
    entries = [instance("127.0.0.2", 80, weight=5), instance("127.0.0.3", 80)]
    assert parse_health(entries) == (Endpoint("127.0.0.2", 80, 5), Endpoint("127.0.0.3", 80, 1))


def test_an_instance_with_a_failing_check_is_left_out() -> None:
    entries = [instance("127.0.0.2", 80, passing=False), instance("127.0.0.3", 80)]
    assert parse_health(entries) == (Endpoint("127.0.0.3", 80),)


def test_index_rules() -> None:
    assert next_index(0, "42") == 42
    assert next_index(42, "43") == 43
    assert next_index(42, "7") == 0  # went backwards: reset
    assert next_index(0, "0") == 1  # never block on 0 (it would return at once forever)
    assert next_index(5, None) == 0


@pytest.fixture
def consul() -> Iterator[ConsulStandin]:
    server = ConsulStandin(token="s3cret").start()
    yield server
    server.close()


def provider(consul: ConsulStandin, **kw: object) -> ConsulProvider:
    args: dict[str, object] = {"token": "s3cret", "wait": 2.0, **kw}
    return ConsulProvider(consul.url, "api", **args)  # type: ignore[arg-type]


async def test_first_query_then_a_blocking_one_woken_by_a_change(
        consul: ConsulStandin) -> None:
    consul.set_instances("api", [instance("127.0.0.2", 80)])
    p = provider(consul)
    first = await p.resolve()
    assert first.endpoints == (Endpoint("127.0.0.2", 80),) and first.ttl == 0.0
    assert "index" not in consul.requests[0]["query"]
    assert consul.requests[0]["token"] == "s3cret"
    started = time.monotonic()
    pending = asyncio.ensure_future(p.resolve())
    await asyncio.sleep(0.3)
    assert not pending.done()  # held by the server: nothing changed
    await asyncio.to_thread(consul.set_instances, "api", [instance("127.0.0.3", 80)])
    second = await pending
    assert second.endpoints == (Endpoint("127.0.0.3", 80),)
    assert time.monotonic() - started < 1.5  # woken by the change, not by `wait`
    assert consul.requests[1]["query"]["index"] == str(consul.index - 1)
    assert consul.requests[1]["query"]["wait"] == "2s"


async def test_an_index_that_went_backwards_is_reset_to_0(consul: ConsulStandin) -> None:
    consul.set_instances("api", [instance("127.0.0.2", 80)])
    p = provider(consul, wait=0.5)
    await p.resolve()
    await asyncio.to_thread(consul.set_index, 3)  # a restore
    await p.resolve()  # held the whole wait (3 < our index), then answers index 3
    assert p.index == 0
    await p.resolve()
    assert "index" not in consul.requests[-1]["query"]  # a fresh, non-blocking read
    assert p.index == 3


async def test_tag_and_datacenter_are_sent(consul: ConsulStandin) -> None:
    consul.set_instances("api", [instance("127.0.0.2", 80, tags=("v2",), dc="dc2"),
                                 instance("127.0.0.3", 80, dc="dc2"),
                                 instance("127.0.0.4", 80, tags=("v2",))])
    answer = await provider(consul, tag="v2", datacenter="dc2").resolve()
    assert answer.endpoints == (Endpoint("127.0.0.2", 80),)
    assert consul.requests[0]["query"] == {"passing": "true", "tag": "v2", "dc": "dc2"}


async def test_no_token_or_a_wrong_one_is_a_failed_refresh(consul: ConsulStandin) -> None:
    for token in (None, "wrong"):
        with pytest.raises(DiscoveryError, match="403"):
            await provider(consul, token=token).resolve()


async def test_an_unknown_service_is_zero_instances(consul: ConsulStandin) -> None:
    assert (await provider(consul).resolve()).endpoints == ()


async def test_a_server_that_is_down_is_a_failed_refresh(consul: ConsulStandin) -> None:
    consul.stop()
    with pytest.raises(DiscoveryError):
        await provider(consul).resolve()
