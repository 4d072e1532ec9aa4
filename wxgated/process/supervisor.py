"""The multi-worker process model: one supervisor, N worker processes on one port.

This module is the supervisor's lifecycle: start, READY=1, reload, stop. Its parts:
`workerpool` (the worker processes and their restarts), `workersockets` (how the
workers share the port), `workerreload` (SIGHUP to the workers and their answers) and
`workerproc` (what runs inside a worker).

Signals: SIGHUP is forwarded to every worker that has reported ready; SIGTERM/SIGINT
become SIGTERM to every worker, then after `shutdown_grace + kill_margin` stragglers
get SIGKILL; a second SIGTERM/SIGINT SIGKILLs at once. Workers live in their own
process group so a terminal's Ctrl-C reaches only the supervisor (under systemd, use
KillMode=mixed for the same reason).

Worker → supervisor messages go over a pipe: `worker_ready()` once serving,
`worker_reloaded(ok)` after handling SIGHUP. READY=1 and the end of RELOADING=1 wait
for them, so systemd's view matches what the workers actually do.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wxgated.process import workerproc
from wxgated.process.sdnotify import Notifier
from wxgated.process.workerpool import PoolEvents, RestartPolicy, Slot, WorkerMain, WorkerPool
from wxgated.process.workerproc import parse_listen, reuse_port_available
from wxgated.process.workerreload import ReloadFanout
from wxgated.process.workersockets import WorkerSockets

log = logging.getLogger(__name__)

FATAL_EXIT = workerproc.FATAL_EXIT
ReloadHook = Callable[[], "bool | None | Awaitable[bool | None]"]
# Re-exported so workers import one module.
worker_ready = workerproc.worker_ready
worker_reloaded = workerproc.worker_reloaded
worker_payload = workerproc.worker_payload
worker_index = workerproc.worker_index


@dataclass(frozen=True)
class SupervisorSettings:
    """Timings (seconds) and socket options; the defaults suit production."""

    shutdown_grace: float = 15.0  # workers' own drain limit (server.timeouts.shutdown_grace)
    kill_margin: float = 2.0  # extra wait before SIGKILL, for the workers' own cleanup
    backoff_initial: float = 0.5  # first restart delay; doubles per consecutive failure
    backoff_max: float = 30.0
    stable_after: float = 10.0  # a worker that lived this long resets its failure count
    ready_timeout: float = 60.0  # how long start() waits for worker_ready()
    reload_timeout: float = 30.0  # how long reload() waits for worker_reloaded()
    reuse_port: bool | None = None  # None: SO_REUSEPORT when the platform has it
    backlog: int = 1024  # listen() backlog of the shared socket (inherited mode)

    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy(self.backoff_initial, self.backoff_max, self.stable_after)


class Supervisor:
    """Runs `worker_count` copies of `worker_main(index, sock)`; see the module doc.

    `on_reload` runs in the supervisor on SIGHUP before the workers are told (e.g. to
    validate the config and reload the admin listener); returning False means "the
    new config is bad", and the workers are not bothered. `payload` (picklable) is given
    to every worker started from then on (`worker_payload()`): set it to the last good
    config so a worker restarted while the file on disk is broken still starts.
    """

    def __init__(
        self,
        worker_count: int,
        worker_main: WorkerMain,
        listen_addr: str | tuple[str, int] | None,
        settings: SupervisorSettings | None = None,
        *,
        notifier: Notifier | None = None,
        on_reload: ReloadHook | None = None,
        payload: Any = None,
    ) -> None:
        if worker_count < 1:
            raise ValueError("worker_count must be >= 1")
        self.worker_count = worker_count
        self.listen = parse_listen(listen_addr) if listen_addr is not None else None
        settings = settings or SupervisorSettings()
        self.reuse_port = (reuse_port_available() if settings.reuse_port is None
                           else settings.reuse_port)
        self.notifier = notifier if notifier is not None else Notifier(unset_env=True)
        self.on_reload = on_reload
        self._sockets = WorkerSockets(self.listen, self.reuse_port)
        events = PoolEvents(ready=self._worker_ready, answered=self._worker_answered,
                            exited=self._worker_exited, restarting=self._worker_restarting)
        self._pool = WorkerPool(worker_count, worker_main, self._sockets,
                                settings.restart_policy(), events, payload)
        self._fanout = ReloadFanout(self._pool)
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new | starting | running | stopping | done
        self._all_ready = asyncio.Event()
        self._done = asyncio.Event()
        self._exit_code = 0
        self._kill_timer: asyncio.TimerHandle | None = None
        self._reload_lock = asyncio.Lock()
        self._reload_queued = False

    @property
    def settings(self) -> SupervisorSettings:
        return self._settings

    @settings.setter
    def settings(self, value: SupervisorSettings) -> None:
        """Replaceable while running (the drain limit follows a reloaded config); the
        pool's restart policy follows along so the two never disagree."""
        self._settings = value
        self._pool.policy = value.restart_policy()

    @property
    def payload(self) -> Any:
        return self._pool.payload

    @payload.setter
    def payload(self, value: Any) -> None:
        self._pool.payload = value

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), useful with port 0."""
        return self._sockets.address

    @property
    def ready(self) -> bool:
        """Every worker reported ready and no shutdown has begun (for /readyz)."""
        return self._state == "running"

    def workers(self) -> dict[str, Any]:
        """For the status page: how many workers are configured, serving, and their pids."""
        return {"configured": self.worker_count, "serving": self._pool.serving,
                "pids": sorted(self.pids.values())}

    @property
    def pids(self) -> dict[int, int]:
        """Worker index → pid of the live process."""
        return self._pool.pids

    async def run(self) -> int:
        """Start, tell systemd READY=1, serve until SIGTERM/SIGINT; the exit code."""
        loop = asyncio.get_running_loop()
        self.notifier.status(f"starting {self.worker_count} workers")
        signals = self._install_signals(loop)
        watchdog = None
        try:
            if await self.start():
                self.notifier.ready(status=self._status_text())
                watchdog = self.notifier.start_watchdog()
            return await self.wait()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            for sig in signals:
                loop.remove_signal_handler(sig)

    async def start(self) -> bool:
        """Bind and start the workers; True once all reported ready. False when a worker
        exited with FATAL_EXIT during startup (the supervisor is then shutting down)."""
        self._loop = asyncio.get_running_loop()
        self._state = "starting"
        self._sockets.bind(self.settings.backlog)
        self._pool.spawn_all()
        try:
            await asyncio.wait_for(self._all_ready.wait(), self.settings.ready_timeout)
        except TimeoutError:
            log.warning("not every worker reported ready within %.0fs; carrying on",
                        self.settings.ready_timeout)
        if self._state != "starting":
            return False
        self._state = "running"
        return True

    async def wait(self) -> int:
        """Until every worker is gone after `shutdown()`; 0 when all exited cleanly."""
        await self._done.wait()
        self._sockets.close()
        self._state = "done"
        return self._exit_code

    def request_reload(self) -> None:
        """Coalescing, fire-and-forget `reload()` (what SIGHUP does)."""
        if self._reload_queued or self._loop is None:
            return
        self._reload_queued = True
        self._loop.create_task(self._queued_reload())

    async def reload(self) -> bool:
        """RELOADING=1, `on_reload`, SIGHUP to ready workers and await their answers,
        READY=1. True when the supervisor hook and every worker reported success."""
        self.notifier.reloading(status="reloading")
        ok = False
        try:
            result = self.on_reload() if self.on_reload is not None else True
            if isinstance(result, Awaitable):
                result = await result
            if result is not False:
                ok = await self._fanout.run(self.settings.reload_timeout)
        except Exception:
            log.exception("reload failed")
        finally:  # systemd must never be left in "reloading"
            self.notifier.ready(status=self._status_text(
                None if ok else "last reload failed; serving the last good config"))
        return ok

    def shutdown(self) -> None:
        """Graceful stop; a second call kills the workers at once."""
        if self._state in ("stopping", "done"):
            log.warning("second stop request: killing workers now")
            self._exit_code = self._exit_code or 1
            self._pool.signal_all(signal.SIGKILL)
            return
        self._state = "stopping"
        self._all_ready.set()  # releases a start() still waiting for workers
        grace = self.settings.shutdown_grace
        self.notifier.stopping(status=f"stopping: draining up to {grace:g}s")
        self._pool.stop_restarts()
        self._pool.signal_all(signal.SIGTERM)
        self._fanout.abandon()
        loop = self._loop or asyncio.get_running_loop()
        self._kill_timer = loop.call_later(
            grace + self.settings.kill_margin, self._kill_stragglers)
        self._check_done()

    def _worker_ready(self, slot: Slot) -> None:
        self._fanout.worker_ready(slot)
        if self._pool.all_ready():
            self._all_ready.set()
            if self._state == "running":
                self.notifier.status(self._status_text())

    def _worker_answered(self, slot: Slot, ok: bool) -> None:
        self._fanout.answered(slot, ok)

    def _worker_exited(self, slot: Slot, pid: int | None, code: int | None) -> None:
        """The supervisor's state says what an exit means: part of a stop, a worker
        that can never start (give up rather than loop), or a crash to restart."""
        self._fanout.worker_gone(pid)
        if self._state in ("stopping", "done"):
            if code != 0:
                log.warning("worker %d (pid %s) exited with %s while stopping",
                            slot.index, pid, code)
                self._exit_code = self._exit_code or 1
            self._check_done()
            return
        if self._state == "starting" and code == FATAL_EXIT:
            log.error("worker %d cannot start (exit %d); giving up", slot.index, code)
            self._exit_code = FATAL_EXIT
            self.shutdown()
            return
        log.error("worker %d (pid %s) exited with %s; restarting", slot.index, pid, code)
        self._pool.restart_crashed(slot)

    def _worker_restarting(self, slot: Slot, delay: float) -> None:
        self.notifier.status(self._status_text(
            f"worker {slot.index} restarting in {delay:.1f}s"))

    def _kill_stragglers(self) -> None:
        if alive := self._pool.live:
            log.warning("%d workers still busy after the grace period: SIGKILL", alive)
            self._exit_code = self._exit_code or 1
            self._pool.signal_all(signal.SIGKILL)

    def _check_done(self) -> None:
        if self._state == "stopping" and self._pool.all_gone():
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            self._done.set()

    async def _queued_reload(self) -> None:
        async with self._reload_lock:
            self._reload_queued = False
            if self._state == "running":
                await self.reload()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        loop.add_signal_handler(signal.SIGTERM, self.shutdown)
        loop.add_signal_handler(signal.SIGINT, self.shutdown)
        return [signal.SIGHUP, signal.SIGTERM, signal.SIGINT]

    def _status_text(self, extra: str | None = None) -> str:
        addr = self.address
        where = f"{addr[0]}:{addr[1]}" if addr else "no listener"
        text = f"{self._pool.live}/{self.worker_count} workers serving on {where}"
        return f"{text}; {extra}" if extra else text
