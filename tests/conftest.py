"""Shared fixtures: real upstream servers, a real redis-server, free ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


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


async def start_app(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app on 127.0.0.1; returns the runner and its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


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
