"""Shared fixtures: real upstream servers, a real redis-server (and a hung one, and a
one-node Cluster), a `wxgated run` subprocess. The helpers they are built on live in
tests/support/."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.redisproc import start_cluster_node
from tests.support.servers import LoopThread, free_port, start_app, wait_port
from wxgated.state import StateBackend, open_backend


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port for the whole test session."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; run scripts/test.sh, which installs it")
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
async def serve() -> AsyncIterator:
    """`url = await serve(app)`: start an upstream app, stopped after the test."""
    runners: list[web.AppRunner] = []

    async def _serve(app: web.Application, port: int = 0) -> str:
        runner, url = await start_app(app, port)
        runners.append(runner)
        return url

    yield _serve
    for r in runners:
        await r.cleanup()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator:
    """`gw = gateway(config_dict)`: a real `wxgated run` subprocess on free ports."""
    from tests.support.gateway import GatewayProcess

    procs: list[GatewayProcess] = []

    def _start(config: dict, env: dict | None = None, wait: bool = True) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(procs)}"
        workdir.mkdir()
        gw = GatewayProcess(workdir, config, env)
        procs.append(gw)
        return gw.start(wait)

    yield _start
    for gw in procs:
        gw.stop()


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
async def hung_url() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    conns: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for w in conns:
        w.close()
    server.close()


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, port = start_cluster_node(tmp_path_factory.mktemp("cluster"))
    try:
        cli = shutil.which("redis-cli") or "redis-cli"
        deadline = time.monotonic() + 30  # Redis holds a new cluster node back ~2 s
        while b"cluster_state:ok" not in subprocess.run(
            [cli, "-p", str(port), "cluster", "info"], capture_output=True
        ).stdout:
            assert time.monotonic() < deadline, "cluster did not become ready"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture(params=["memory", "redis"])
async def state_backend(request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
    """Each backend in turn, for a test that must hold on both: the memory one and a real
    redis-server (a unique key prefix per test keeps tests apart on the shared server)."""
    if request.param == "memory":
        backend = open_backend({"backend": "memory"})
    else:
        backend = open_backend({"backend": "redis", "redis": {
            "url": request.getfixturevalue("redis_url"), "timeout": "500ms",
            "prefix": f"t{uuid.uuid4().hex}:"}})
    assert backend.name == request.param
    yield backend
    await backend.close()
