"""A TLS upstream: an aiohttp app served over TLS from its own thread, and the echo app
the TLS tests serve."""

from __future__ import annotations

import asyncio
import ssl
import threading

from aiohttp import web


def echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"tls": request.secure, "path": request.path,
                                  "headers": {k.lower(): v for k, v in request.headers.items()}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


class TLSApp:
    """An aiohttp app served over TLS from its own thread, like ThreadedApp."""

    def __init__(self, app: web.Application, ctx: ssl.SSLContext) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def serve() -> None:
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ctx)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
