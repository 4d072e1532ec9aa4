"""concurrency_limit: at most N in flight, 503 beyond, slots held until the body ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.support.ratelimit import make_req, msg, refused, run
from wxgated.config.context import CompileContext
from wxgated.config.errors import SemanticError
from wxgated.filters import FILTERS
from wxgated.filters.concurrency_limit import ConcurrencyLimit
from wxgated.gateway.engine import chain as engine_chain
from wxgated.http.message import Handler, HTTPError, Request, Response
from wxgated.registry import Registry


def build(cfg: Any, terminal: Handler, registry: Registry | None = None) -> ConcurrencyLimit:
    ctx = CompileContext(config={}, registry=registry or Registry(), route_name="cl",
                         route={"filters": [{"concurrency_limit": cfg}]})
    return ConcurrencyLimit(cfg, ctx)


class Gate:
    """A terminal whose requests stay in flight until the test opens the gate."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0

    async def __call__(self, req: Request) -> Response:
        self.entered += 1
        await self.open.wait()
        return Response(200, body=b"done")


async def test_503_when_full_and_a_slot_frees_when_a_request_ends() -> None:
    gate = Gate()
    f = build(2, gate)
    chain = engine_chain([f], gate)
    first = [asyncio.create_task(chain(make_req())) for _ in range(2)]
    await asyncio.sleep(0.01)
    err = await run(chain, make_req())
    assert refused(err) and err.status == 503
    assert msg(err) == "too many concurrent requests"
    assert dict(err.headers)[b"retry-after"] == b"1"
    assert gate.entered == 2  # the refused request never reached the backend
    gate.open.set()
    assert [r.status for r in await asyncio.gather(*first)] == [200, 200]
    assert (await chain(make_req())).status == 200
    assert f.gate.in_flight("") == 0


async def test_failed_requests_release_their_slot() -> None:
    async def boom(req: Request) -> Response:
        raise HTTPError(502, "bad gateway")

    f = build(1, boom)
    chain = engine_chain([f], boom)
    for _ in range(3):
        err = await run(chain, make_req())
        assert refused(err) and err.status == 502
    assert f.gate.in_flight("") == 0


async def test_streamed_body_holds_the_slot_until_it_ends() -> None:
    release_body = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"head"
        await release_body.wait()
        yield b"tail"

    async def streaming(req: Request) -> Response:
        return Response(200, stream=body())

    f = build(1, streaming)
    chain = engine_chain([f], streaming)
    resp = await chain(make_req())
    assert resp.stream is not None
    it = resp.stream.__aiter__()
    assert await it.__anext__() == b"head"
    # The handler has returned, but the body is still being sent: the route is full.
    err = await run(chain, make_req())
    assert refused(err) and err.status == 503
    release_body.set()
    assert [c async for c in it] == [b"tail"]
    second = await chain(make_req())
    assert second.status == 200
    await second.read_body()  # read to the end: released again
    assert f.gate.in_flight("") == 0


async def test_closed_streams_release_their_slot() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        await asyncio.sleep(3600)
        yield b"never"

    async def streaming(req: Request) -> Response:
        return Response(200, stream=body())

    f = build(1, streaming)
    chain = engine_chain([f], streaming)
    resp = await chain(make_req())
    await resp.stream.__anext__()  # type: ignore[union-attr]
    await resp.stream.aclose()  # type: ignore[union-attr]  # the client went away
    assert f.gate.in_flight("") == 0


async def test_per_key_limit_isolates_clients() -> None:
    gate = Gate()
    f = build({"max": 1, "key": "ip"}, gate)
    chain = engine_chain([f], gate)
    held = asyncio.create_task(chain(make_req("1.1.1.1")))
    await asyncio.sleep(0.01)
    assert refused(await run(chain, make_req("1.1.1.1")))
    other = asyncio.create_task(chain(make_req("2.2.2.2")))
    await asyncio.sleep(0.01)
    assert gate.entered == 2
    gate.open.set()
    await asyncio.gather(held, other)
    assert len(f.gate) == 0  # no per-key entries left behind


async def test_counter_survives_a_reload_with_unchanged_config() -> None:
    gate = Gate()
    registry = Registry()
    old = build(1, gate, registry)
    registry.commit()
    held = asyncio.create_task(engine_chain([old], gate)(make_req()))
    await asyncio.sleep(0.01)
    new = build(1, gate, registry)
    registry.commit()
    # The request still running under the old config counts against the new one.
    assert refused(await run(engine_chain([new], gate), make_req()))
    gate.open.set()
    await held


def test_config_errors_and_schema() -> None:
    with pytest.raises(SemanticError) as e:
        build({"max": 2, "key": "nope"}, lambda r: None)  # type: ignore[arg-type,return-value]
    assert e.value.path == ("key",)
    v = Draft202012Validator(FILTERS["concurrency_limit"].schema)
    assert v.is_valid(50) and v.is_valid({"max": 5, "key": "claim.openid"})
    assert not v.is_valid(0) and not v.is_valid({"key": "ip"})
    assert not v.is_valid({"max": 5, "maximum": 6})
