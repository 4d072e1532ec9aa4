"""Shared fixtures: real upstream servers, a real redis-server, free ports."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator:
    """`gw = gateway(config_dict)`: a real `wxgated run` subprocess on free ports."""
    from tests.gateway import GatewayProcess

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


class ThreadedApp:
    """An aiohttp app served from its own thread and loop, for module-scoped upstreams
    that outlive any one test's event loop."""

    def __init__(self, app: web.Application, port: int = 0) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.url = ""

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.runner, self.url = self.loop.run_until_complete(start_app(app, port))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(10)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        import asyncio

        fut = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class LoopThread:
    """An event loop on its own thread for servers ThreadedApp can't express: a raw
    asyncio server, or an aiohttp runner with its own keep-alive timeout."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        async def drain() -> None:  # handlers still running end now, not at interpreter exit
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()
