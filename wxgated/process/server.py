"""One gateway process: listeners, the live Snapshot, reload, graceful shutdown.

Reload is validate-then-swap: the new file is compiled completely against the shared
Registry before one assignment makes it live; a bad file leaves the old Snapshot
serving and its errors in the log. Shutdown stops accepting, lets in-flight requests
finish within `shutdown_grace`, and closes idle keep-alive connections at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from wxgated.config.errors import ConfigError
from wxgated.config.spec import duration
from wxgated.config.units import parse_size
from wxgated.gateway.dispatch import GatewayDispatcher
from wxgated.http.clientip import ClientIPResolver
from wxgated.http.serving import ServerConfig
from wxgated.http.target import PathRules
from wxgated.observe import tracing
from wxgated.observe.accesslog import AccessLog
from wxgated.observe.metrics import CONFIG_RELOADS
from wxgated.observe.metrics import flush as flush_metrics
from wxgated.observe.tracing_config import settings as tracing_settings
from wxgated.process.configsource import ConfigSource, FileSource
from wxgated.process.liveconfig import pinned, restart_needed
from wxgated.process.reloader import watch_files
from wxgated.process.workerproc import bind_socket, parse_listen
from wxgated.registry import Registry
from wxgated.upstream.discovery import discovery_settled, start_discovery

log = logging.getLogger("wxgated")


def server_config(cfg: dict[str, Any], into: ServerConfig | None = None) -> ServerConfig:
    """ServerConfig from `server:`; updates `into` in place so live connections follow.

    A key read here applies on reload: list it in liveconfig.LIVE_SERVER_KEYS, or a
    change to it is reported as needing a restart."""
    server = cfg.get("server", {})
    limits = server.get("limits", {})
    timeouts = server.get("timeouts", {})
    sc = into or ServerConfig()
    sc.max_header = parse_size(limits.get("max_header", "16KiB"))
    sc.max_body = parse_size(limits.get("max_body", "1MiB"))
    sc.max_connections = int(limits.get("max_connections", 0))
    sc.request_buffer = parse_size(limits.get("request_buffer", "64KiB"))
    sc.header_timeout = duration(timeouts.get("header"), 10.0)
    sc.idle_timeout = duration(timeouts.get("idle"), 75.0)
    sc.body_timeout = duration(timeouts.get("body"), 60.0)
    sc.scheme = "https" if server.get("tls") else "http"
    sc.path_rules = PathRules(bool(server.get("normalize_path", True)),
                              bool(server.get("merge_slashes", True)),
                              str(server.get("escaped_slashes", "reject")))
    sc.allow_underscores = bool(server.get("allow_underscores_in_headers", False))
    return sc


TRACE_DRAIN = 2.0  # seconds a stop waits for queued spans to reach the collector


class Gateway:
    """The serving half of a process. `admin` and `notifier` are optional: with several
    workers the supervisor owns them."""

    def __init__(self, config: str | ConfigSource, access_log: AccessLog | None = None) -> None:
        self.source: ConfigSource = FileSource(config) if isinstance(config, str) else config
        self.config_path = self.source.path  # the file a (re)started worker loads
        self.registry = Registry()
        self.access_log = access_log or AccessLog()
        self.snapshot: Any = None
        self.dispatcher: GatewayDispatcher | None = None
        self.servers: list[asyncio.base_events.Server] = []
        self.ready = False
        self._reload_lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self.before_reload: list[Any] = []  # callbacks() (sd_notify RELOADING=1)
        self.on_reload: list[Any] = []  # callbacks(ok: bool) (sd_notify READY=1)
        self.count_reloads = True  # False in workers: their supervisor counts
        self.tls: Any = None
        self.started_with: dict[str, Any] = {}  # liveconfig.pinned() of the first load
        self.pending_restart: list[str] = []  # changed settings that wait for a restart
        self.last_reload: dict[str, Any] | None = None  # {"result", "at"}; None: no reload yet
        self._warned_discovery = False
        self._drains: set[asyncio.Future[bool]] = set()  # replaced span exporters flushing

    def load(self) -> None:
        """The first load; raises ConfigError so `run` exits before binding anything."""
        self.snapshot = self.source.first_compile(self.registry)
        self.registry.commit()
        self.started_with = pinned(self.snapshot.config)

    async def start(self, sock: socket.socket | None = None) -> None:
        cfg = self.snapshot.config
        server = cfg.get("server", {})
        self.access_log.enabled = cfg.get("access_log", {}).get("enabled", True)
        self.dispatcher = GatewayDispatcher(self.snapshot, server_config(cfg), self.access_log,
                                            ClientIPResolver(server.get("trusted_proxies", [])))
        self._trace(cfg)
        ssl_ctx = None
        if server.get("tls"):
            from wxgated.http.tls import CertReloader

            self.tls = CertReloader(server["tls"]["cert"], server["tls"]["key"])
            ssl_ctx = self.tls.context
        if sock is None:
            host, port = parse_listen(server.get("listen", "0.0.0.0:8080"))
            sock = bind_socket(host, port, reuse_port=False)
        loop = asyncio.get_running_loop()
        # GatewayProtocol is an asyncio protocol by shape (compiled, it subclasses none)
        factory = cast(Callable[[], asyncio.BaseProtocol], self.dispatcher.protocol)
        srv = await loop.create_server(factory, sock=sock, ssl=ssl_ctx, backlog=4096)
        self.servers.append(srv)
        self.ready = True
        start_health_checks(self.snapshot)
        start_discovery(self.snapshot.upstreams)
        self._flush_metrics()

    def serving_ready(self) -> bool:
        """For /readyz: serving, and every discovered upstream has had its first answer
        (or `server.discovery_ready_timeout` passed: then ready anyway, with a warning,
        so a registry outage at start cannot keep the whole gateway out of rotation)."""
        if not self.ready or self.snapshot is None:
            return False
        ups = self.snapshot.upstreams
        if discovery_settled(ups, math.inf, 0.0):
            return True  # every discovered upstream has had an answer (or there are none)
        timeout = duration(self.snapshot.config.get("server", {})
                           .get("discovery_ready_timeout"), 10.0)
        if not discovery_settled(ups, timeout, time.monotonic()):
            return False
        if not self._warned_discovery:
            self._warned_discovery = True
            waiting = [n for n, u in ups.items() if u.discovered and not u.discovered.answered]
            log.warning("ready without a first discovery answer for %s after %.0fs",
                        ", ".join(waiting), timeout)
        return True

    async def wait_discovery(self, stop: asyncio.Event | None = None) -> None:
        """Until serving_ready() (workers report ready to the supervisor only then), or
        `stop` is set (a SIGTERM during the wait must not wait for the registry)."""
        while not self.serving_ready() and not (stop is not None and stop.is_set()):
            await asyncio.sleep(0.05)

    def _flush_metrics(self) -> None:
        """Hand locally counted metrics to prometheus twice a second (worker snapshots
        and scrapes between flushes see at most 0.5 s old values)."""
        flush_metrics()
        if not self.dispatcher or not self.dispatcher.shutting_down:
            asyncio.get_running_loop().call_later(0.5, self._flush_metrics)

    def watch(self) -> None:
        """Reload on file changes (the config and the files it references)."""
        self._watch = asyncio.ensure_future(watch_files(self.watched, self._on_files))

    def watched(self) -> list[str]:
        return self.source.watched(self.snapshot)

    async def _on_files(self) -> None:
        await self.reload("file change")

    async def reload(self, reason: str) -> bool:
        """Re-read the config (and the TLS pair: a renewed certificate needs no restart).

        True when the new config serves; settings that wait for a restart are named in
        a warning and counted as result="partial", never reported as applied."""
        for cb in self.before_reload:
            cb()
        async with self._reload_lock:
            if self.tls is not None:
                self.tls.check()
            snap = self._compile()
            if snap is None:
                self._notify(False)
                return False
            self._swap(snap)
            self._report(snap, reason)
            self._notify(True)
            return True

    def _compile(self) -> Any:
        """The new Snapshot, or None once the failure is logged and counted."""
        try:
            return self.source.compile(self.registry)
        except ConfigError as exc:
            self._count("failure")
            for issue in exc.issues:
                self.access_log.event("error", "config reload failed", issue=str(issue))
        except Exception as exc:  # noqa: BLE001 - a reload must never kill the server
            self._count("failure")
            self.access_log.event("error", "config reload failed", error=repr(exc))
        return None

    def _swap(self, snap: Any) -> None:
        """Make `snap` live, with every server setting live connections can follow."""
        self.snapshot = snap
        cfg = snap.config
        server = cfg.get("server", {})
        self.access_log.enabled = cfg.get("access_log", {}).get("enabled", True)
        d = self.dispatcher
        if d is not None:
            server_config(cfg, d.cfg)
            d.client_ip = ClientIPResolver(server.get("trusted_proxies", []))
            d.snapshot = snap
        self._trace(cfg)
        if self.tls is not None and "tls" in server:
            self.tls.retarget(server["tls"]["cert"], server["tls"]["key"])
        self.registry.commit()
        if d is not None:
            start_health_checks(snap)
            start_discovery(snap.upstreams)

    def _report(self, snap: Any, reason: str) -> None:
        self.pending_restart = (restart_needed(self.started_with, snap.config)
                                if self.started_with else [])
        if not self.pending_restart:
            self._count("success")
            self.access_log.event("info", "config reloaded", reason=reason, sha256=snap.sha256,
                                  routes=len(snap.routes))
            return
        self._count("partial")
        self.access_log.event(
            "warning", "config reloaded, except settings that need a restart: "
            + ", ".join(self.pending_restart), reason=reason, sha256=snap.sha256,
            routes=len(snap.routes), restart_needed=self.pending_restart)

    def _count(self, result: str) -> None:
        self.last_reload = {"result": result, "at": round(time.time(), 3)}  # the status page
        if self.count_reloads:
            CONFIG_RELOADS.labels(result).inc()

    def _notify(self, ok: bool) -> None:
        for cb in self.on_reload:
            cb(ok)

    async def shutdown(self, grace: float | None = None) -> None:
        if grace is None:
            timeouts = self.snapshot.config.get("server", {}).get("timeouts", {})
            grace = duration(timeouts.get("shutdown_grace"), 15.0)
        if self._watch is not None:
            self._watch.cancel()
        for srv in self.servers:
            srv.close()
        d = self.dispatcher
        if d is not None:
            d.shutting_down = True
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while True:
                busy = [c for c in list(d.connections) if not c.close_idle()]
                if not busy or loop.time() >= deadline:
                    break
                await asyncio.sleep(0.05)
            for conn in list(d.connections):
                if conn.tunnel is not None:
                    conn.tunnel.shutdown()
                elif not conn.closed:
                    conn.transport.close()
        self.access_log.flush()
        flush_metrics()
        await self.registry.aclose_all()
        old = tracing.configure(None)
        if old is not None:  # the spans of the last requests still go out (if they can)
            await tracing.drain(old.sink, TRACE_DRAIN)

    def _trace(self, cfg: dict[str, Any]) -> None:
        """Start, change or stop the span export `observe.tracing` asks for (at start,
        in each worker, and on reload). The replaced exporter flushes in a thread."""
        old = tracing.configure(tracing_settings(cfg))
        if old is not None:
            self._drains.add(task := asyncio.ensure_future(tracing.drain(old.sink, 30.0)))
            task.add_done_callback(self._drains.discard)


def start_health_checks(snap: Any) -> None:
    """Active checks run only where traffic is served (idempotent for kept checkers)."""
    for upstream in snap.upstreams.values():
        if upstream.checker is not None:
            upstream.checker.start()


def install_signals(loop: asyncio.AbstractEventLoop, on_reload: Any, on_stop: Any) -> None:
    """SIGHUP reloads; SIGTERM/SIGINT stop gracefully; a second one exits at once."""
    stopping = {"n": 0}

    def stop(signame: str) -> None:
        stopping["n"] += 1
        if stopping["n"] > 1:
            os._exit(1)
        on_stop(signame)

    loop.add_signal_handler(signal.SIGHUP, on_reload)
    loop.add_signal_handler(signal.SIGTERM, stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, stop, "SIGINT")
