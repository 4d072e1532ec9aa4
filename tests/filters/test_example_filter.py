"""The example filter in docs/HACKING.md is real: its code block, run as a module, is a
filter the schema picks up and the engine runs, with nothing else edited."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wxgated.compiler.schema import build_schema
from wxgated.config.context import CompileContext
from wxgated.filters import FILTERS
from wxgated.gateway.engine import chain
from wxgated.http.message import Body, Request, Response
from wxgated.registry import Registry

HACKING = Path(__file__).resolve().parents[2] / "docs" / "HACKING.md"


def example_source() -> str:
    text = HACKING.read_text()
    after = text[text.index("An example, whole"):]
    found = re.search(r"```python\n(.*?)```", after, re.S)
    assert found is not None, "docs/HACKING.md lost its example filter"
    return found.group(1)


@pytest.fixture
def maintenance() -> Iterator[Any]:
    module = types.ModuleType("example_filter")
    sys.modules[module.__name__] = module  # as an import would (dataclasses looks there)
    try:
        exec(compile(example_source(), str(HACKING), "exec"), module.__dict__)
        yield FILTERS["maintenance"]
    finally:
        FILTERS.pop("maintenance", None)
        del sys.modules[module.__name__]


def test_the_schema_takes_the_example_without_other_edits(maintenance: Any) -> None:
    route = build_schema()["properties"]["routes"]["items"]
    one_filter = route["properties"]["filters"]["items"]["properties"]
    assert one_filter["maintenance"] == maintenance.schema


async def test_the_engine_runs_the_example(maintenance: Any) -> None:
    ctx = CompileContext(config={}, registry=Registry(), route_name="m", route={"name": "m"})

    async def backend(req: Request) -> Response:
        return Response(200, [(b"content-type", b"text/plain")], b"worked on")

    run = chain([maintenance({"retry_after": 120, "allow_ips": ["10.0.0.7"]}, ctx)], backend)

    def request(ip: str) -> Request:
        return Request("GET", "/orders", "", [], Body.of(b""), client_ip=ip, trace_id="t1")

    refused = await run(request("10.0.0.8"))
    assert refused.status == 503
    assert refused.header(b"retry-after") == b"120"
    assert json.loads(refused.body)["msg"] == "down for maintenance"
    bypassed = await run(request("10.0.0.7"))
    assert (bypassed.status, bypassed.body) == (200, b"worked on")
    assert bypassed.header(b"x-maintenance") == b"bypassed"
