"""The plumbing shared by the registry stand-ins (tests/support/consul_standin.py,
tests/support/nacos_standin.py): an aiohttp app on 127.0.0.1 on its own loop thread, stopped
and started again on the same port (a registry outage and its recovery), with its
state changed from test code through `change()`, which also wakes held requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web

from tests.support.servers import LoopThread, free_port


class Standin:
    def __init__(self) -> None:
        self.loop = LoopThread()
        self.port = free_port()
        self.runner: web.AppRunner | None = None
        self.requests: list[dict[str, Any]] = []  # what each request carried
        self.changed: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        async def start() -> web.AppRunner:
            self.changed = asyncio.Condition()
            app = web.Application()
            self.routes(app)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            return runner

        self.runner = self.loop.run(start())
        return self

    def stop(self) -> None:
        """Down: the port refuses connections; held requests are cut off."""
        if self.runner is not None:
            self.loop.run(self._cut_and_cleanup(self.runner))
            self.runner = None

    async def _cut_and_cleanup(self, runner: web.AppRunner) -> None:
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task() and "handle" in repr(task.get_coro()):
                task.cancel()
        await runner.cleanup()

    def close(self) -> None:
        self.stop()
        self.loop.stop()

    def change(self, fn: Callable[[], None]) -> None:
        """Run `fn` (a state change) on the server's loop and wake held requests."""
        async def run() -> None:
            fn()
            if self.changed is not None:
                async with self.changed:
                    self.changed.notify_all()

        self.loop.run(run())

    async def hold(self, ready: Callable[[], bool], timeout: float) -> None:
        """Hold a request until `ready()` or `timeout` (a blocking query)."""
        assert self.changed is not None
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(ready), timeout)
            except TimeoutError:
                pass
