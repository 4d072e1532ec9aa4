"""`wxgated run`: one process, or a supervisor with N workers (server.workers).

With one worker everything lives in one process. With several, the supervisor owns
the admin listener, sd_notify, the file watcher and the reload decision; the workers
(spawned, see wxgated/process/supervisor.py) only serve, sharing the port via SO_REUSEPORT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from wxgated.admin import Admin
from wxgated.config.errors import ConfigError
from wxgated.config.spec import worker_count
from wxgated.process.configsource import ConfigSource, SourceUnavailable
from wxgated.process.reloader import watch_files
from wxgated.process.sdnotify import Notifier
from wxgated.process.server import Gateway, install_signals
from wxgated.process.startup import announce, workers_serving
from wxgated.status import single_worker, status_page


def run(source: str | ConfigSource) -> int:
    """`source`: the config file's path, or a config center (configsource.NacosSource)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    gw = Gateway(source)
    try:
        return uvloop.run(serve(gw))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    except SourceUnavailable as exc:
        print(f"wxgated: {exc}", file=sys.stderr)
        return 1


def tune_gc() -> None:
    """Fewer, cheaper collections on a request path that allocates many short-lived
    objects: everything loaded so far (modules, the compiled config) is frozen out of
    the collector's scans, and the young generation may grow larger between runs."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


# the fallbacks of the shipped routes.yaml: fine for a local trial, fatal in production
DEMO_SECRETS = frozenset({"change-me-in-production-0123456789", "demosecret"})


def warn_demo_secrets(cfg: dict[str, Any]) -> None:
    """Say loudly when the shipped fallback secrets are in use (never the values)."""
    secrets = [k.get("secret") for k in cfg.get("jwt", {}).get("keys", [])]
    wx = cfg.get("wechat", {})
    secrets.append(wx.get("secret"))
    secrets += [(app or {}).get("secret") for app in (wx.get("apps") or {}).values()]
    if any(s in DEMO_SECRETS for s in secrets):
        logging.getLogger("wxgated").warning(
            "running with the demo JWT_SECRET / WX_SECRET fallbacks of the shipped "
            "routes.yaml: anyone can mint tokens; set them in the environment")


async def serve(gw: Gateway) -> int:
    """Load, then serve until a stop signal: the whole of `run` (and of `demo`) once the
    loop is up."""
    await gw.source.prepare()
    gw.load()
    tune_gc()
    warn_demo_secrets(gw.snapshot.config)
    for issue in gw.snapshot.warnings:  # what `wxgated check` prints as "warning: ..."
        logging.getLogger("wxgated").warning("config: %s", issue)
    n = worker_count(gw.snapshot.config)
    if n > 1:
        return await serve_supervised(gw, n)
    await serve_single(gw)
    return 0


async def serve_single(gw: Gateway) -> None:
    """One process: the gateway, its admin listener, sd_notify and signals."""
    loop = asyncio.get_running_loop()
    notifier = Notifier()
    await gw.start()
    page = status_page(gw, gw.serving_ready, single_worker)
    admin = Admin(lambda: gw.snapshot, gw.serving_ready, status=page)
    await admin.start(admin_listen(gw))
    announce(gw.snapshot.config, len(gw.snapshot.routes), 1, admin_listen(gw))
    workers_serving(1)
    gw.watch()
    listener = _listen(gw.source, lambda: gw.reload("config source change"))
    stop = asyncio.Event()

    def on_hup() -> None:
        asyncio.ensure_future(gw.reload("SIGHUP"))

    gw.before_reload.append(notifier.reloading)
    gw.on_reload.append(lambda ok: notifier.ready(status=reload_status(gw, ok)))
    install_signals(loop, on_hup, lambda signame: stop.set())
    await gw.wait_discovery(stop)  # sd_notify READY=1 once discovered upstreams have targets
    notifier.ready(status=f"serving {len(gw.snapshot.routes)} routes")
    watchdog = notifier.start_watchdog()
    await stop.wait()
    notifier.stopping()
    if listener is not None:
        listener.cancel()
    await gw.shutdown()
    if watchdog is not None:
        watchdog.cancel()
    await admin.close()


def _listen(source: ConfigSource, on_change: Callable[[], Awaitable[object]]
            ) -> asyncio.Task[None] | None:
    """A config center's change listener (None for a file: the file watcher does it)."""
    listen = getattr(source, "listen", None)
    if listen is None:
        return None
    return asyncio.ensure_future(listen(on_change))


def reload_status(gw: Gateway, ok: bool) -> str:
    """The sd_notify STATUS after a reload: a partial one says what waits for a restart."""
    if not ok:
        return "reload failed; old config serving"
    if gw.pending_restart:
        return "config reloaded; restart to apply " + ", ".join(gw.pending_restart)
    return "config reloaded"


def admin_listen(gw: Gateway) -> str:
    return str(gw.snapshot.config.get("admin", {}).get("listen", "127.0.0.1:9090"))


async def serve_supervised(gw: Gateway, n: int) -> int:
    """The supervisor: validates reloads once, then tells the workers; sums metrics."""
    from wxgated.config.spec import duration
    from wxgated.observe import multiproc
    from wxgated.process.supervisor import Supervisor, SupervisorSettings

    multiproc.setup()
    cfg = gw.snapshot.config
    timeouts = cfg.get("server", {}).get("timeouts", {})
    settings = SupervisorSettings(shutdown_grace=duration(timeouts.get("shutdown_grace"), 15.0))

    async def on_reload() -> bool:
        ok = await gw.reload("reload")  # the supervisor's own copy: admin views, validation
        if ok:  # the supervisor's drain limit follows the config, as the workers' do
            timeouts = gw.snapshot.config.get("server", {}).get("timeouts", {})
            sup.settings = dataclasses.replace(
                sup.settings, shutdown_grace=duration(timeouts.get("shutdown_grace"), 15.0))
        return ok

    sup = Supervisor(n, worker_main, cfg.get("server", {}).get("listen", "0.0.0.0:8080"),
                     settings, notifier=Notifier(unset_env=True), on_reload=on_reload,
                     payload=gw.config_path)
    page = status_page(gw, lambda: sup.ready, sup.workers, aggregated=True)
    admin = Admin(lambda: gw.snapshot, lambda: sup.ready, metrics=multiproc.collect_text,
                  status=page)
    await admin.start(admin_listen(gw))
    announce(cfg, len(gw.snapshot.routes), n, admin_listen(gw))  # once, not per worker
    watcher = asyncio.ensure_future(watch_files(gw.watched, _request(sup)))
    # the supervisor alone listens to a config center; workers reload from the local copy
    listener = _listen(gw.source, _request(sup))
    try:
        return await sup.run()
    finally:
        watcher.cancel()
        if listener is not None:
            listener.cancel()
        await admin.close()
        await gw.registry.aclose_all()
        multiproc.teardown()


def _request(sup: Any) -> Any:
    async def on_change() -> None:
        sup.request_reload()

    return on_change


def worker_main(index: int, sock: Any) -> None:
    """A worker process (spawned by the supervisor): serve on `sock` until SIGTERM."""
    from wxgated.process.supervisor import FATAL_EXIT, worker_payload

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s worker{index}: %(message)s")
    gw = Gateway(worker_payload())
    gw.count_reloads = False  # the supervisor counts each reload once
    try:
        uvloop.run(_worker(gw, sock))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        sys.exit(FATAL_EXIT)


async def _worker(gw: Gateway, sock: Any) -> None:
    from wxgated.process.supervisor import worker_ready, worker_reloaded

    gw.load()
    tune_gc()
    await gw.start(sock=sock)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    async def reload() -> None:
        worker_reloaded(await gw.reload("SIGHUP"))

    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload()))
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await gw.wait_discovery(stop)
    worker_ready()
    await stop.wait()
    await gw.shutdown()
