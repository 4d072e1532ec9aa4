"""`wxgated run`: one process, or a supervisor with N workers (server.workers)."""

from __future__ import annotations

import asyncio
import logging
import sys

import uvloop

from wxgated.admin import Admin
from wxgated.config.errors import ConfigError
from wxgated.sdnotify import Notifier
from wxgated.server import Gateway, install_signals


def run(path: str) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    gw = Gateway(path)
    try:
        uvloop.run(_check_then_serve(gw))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    return 0


async def _check_then_serve(gw: Gateway) -> None:
    gw.load()
    await serve_single(gw)


async def serve_single(gw: Gateway) -> None:
    """One process: the gateway, its admin listener, sd_notify and signals."""
    loop = asyncio.get_running_loop()
    notifier = Notifier()
    await gw.start()
    admin = Admin(lambda: gw.snapshot, lambda: gw.ready)
    await admin.start(gw.snapshot.config.get("admin", {}).get("listen", "127.0.0.1:9090"))
    gw.watch()
    stop = asyncio.Event()

    def on_hup() -> None:
        notifier.reloading()
        asyncio.ensure_future(gw.reload("SIGHUP"))

    gw.on_reload.append(lambda ok: notifier.ready(
        status="config reloaded" if ok else "reload failed; old config serving"))
    install_signals(loop, on_hup, lambda signame: stop.set())
    notifier.ready(status=f"serving {len(gw.snapshot.routes)} routes")
    watchdog = notifier.start_watchdog()
    await stop.wait()
    notifier.stopping()
    await gw.shutdown()
    if watchdog is not None:
        watchdog.cancel()
    await admin.close()
