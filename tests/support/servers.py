"""Servers on real sockets the tests share: free ports, aiohttp apps served on their own
loop thread (module-scoped upstreams outlive any one test's loop), and a bare loop thread
for raw asyncio servers. Fixtures built on them live in tests/conftest.py."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

_GIVEN: set[int] = set()  # ports handed out in this process


def free_port() -> int:
    """A port nothing listens on, never one handed out before in this test process: the
    kernel may give the same free port to two binds in a row (a gateway's server and
    admin ports once came out equal, and its config was refused)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


async def start_app(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app on 127.0.0.1; returns the runner and its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


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


def served(app: web.Application) -> Iterator[ThreadedApp]:
    """The body of a module-scoped upstream fixture: `yield from served(make_app())`
    serves the app for the module and stops it after the module's last test."""
    threaded = ThreadedApp(app)
    yield threaded
    threaded.stop()
