"""The multi-worker process model: one supervisor, N worker processes on one port.

Workers are started with multiprocessing's **spawn** context, not fork. The supervisor
runs an event loop (admin listener, signal handlers, the sd_notify watchdog, maybe a
file watcher thread) and restarts workers while all that is live. A fork would copy
the loop's epoll fd, its signal wakeup fd, uvloop's libuv state and any thread-held
locks into the child, and the child would share the epoll instance with the parent.
Spawn starts a clean interpreter; it costs a few hundred ms per worker start, which
only matters at startup and after a crash. `worker_main` must therefore be importable
(a module-level function) and the socket travels to the child as a duplicated fd.

Sockets: the supervisor binds (so a bad `listen` fails before anything starts and port
0 works) and hands each worker a socket:
- SO_REUSEPORT (Linux): a fresh socket per worker, bound but not listening; the worker's
  `loop.create_server(sock=...)` calls listen(), so the kernel only routes connections
  to it once it can accept them, and spreads connections evenly across workers. The
  supervisor keeps one bound, never-listening socket to hold the port.
- otherwise: one listening socket, inherited by every worker (accept() races).

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
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from wxgated.observe import multiproc
from wxgated.process import workerproc
from wxgated.process.sdnotify import Notifier
from wxgated.process.startup import workers_serving
from wxgated.process.workerproc import bind_socket, parse_listen, reuse_port_available

log = logging.getLogger(__name__)

FATAL_EXIT = workerproc.FATAL_EXIT
WorkerMain = Callable[[int, "socket.socket | None"], None]
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


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """Seconds before restarting a worker that failed `failures` times in a row."""
    return float(min(cap, initial * 2 ** max(0, failures - 1)))


@dataclass
class _Slot:
    index: int
    proc: BaseProcess | None = None
    conn: Connection | None = None
    started: float = 0.0
    failures: int = 0
    ready: bool = False
    hup_when_ready: bool = False
    restart: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


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
        self.worker_main = worker_main
        self.listen = parse_listen(listen_addr) if listen_addr is not None else None
        self.settings = settings = settings or SupervisorSettings()
        self.reuse_port = (reuse_port_available() if settings.reuse_port is None
                           else settings.reuse_port)
        self.notifier = notifier if notifier is not None else Notifier(unset_env=True)
        self.on_reload = on_reload
        self.payload = payload
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i) for i in range(worker_count)]
        self._sock: socket.socket | None = None  # port holder, or the shared listener
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new | starting | running | stopping | done
        self._all_ready = asyncio.Event()
        self._done = asyncio.Event()
        self._exit_code = 0
        self._kill_timer: asyncio.TimerHandle | None = None
        self._acks: dict[int, asyncio.Future[bool]] = {}
        self._reload_lock = asyncio.Lock()
        self._reload_queued = False

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), useful with port 0."""
        return self._sock.getsockname()[:2] if self._sock is not None else None

    @property
    def ready(self) -> bool:
        """Every worker reported ready and no shutdown has begun (for /readyz)."""
        return self._state == "running"

    def workers(self) -> dict[str, Any]:
        """For the status page: how many workers are configured, serving, and their pids."""
        return {"configured": self.worker_count, "serving": sum(s.ready for s in self._slots),
                "pids": sorted(self.pids.values())}

    @property
    def pids(self) -> dict[int, int]:
        """Worker index → pid of the live process."""
        return {s.index: s.pid for s in self._slots if s.proc is not None and s.pid}

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
        if self.listen is not None:
            host, port = self.listen
            self._sock = bind_socket(host, port, reuse_port=self.reuse_port)
            if not self.reuse_port:
                self._sock.listen(self.settings.backlog)
        for slot in self._slots:
            self._spawn(slot)
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
        if self._sock is not None:
            self._sock.close()
        self._sock, self._state = None, "done"
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
                ok = await self._reload_workers()
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
            self._kill_all()
            return
        self._state = "stopping"
        self._all_ready.set()  # releases a start() still waiting for workers
        grace = self.settings.shutdown_grace
        self.notifier.stopping(status=f"stopping: draining up to {grace:g}s")
        for slot in self._slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
            if slot.proc is not None:
                self._signal(slot, signal.SIGTERM)
        for fut in self._acks.values():
            if not fut.done():
                fut.set_result(False)
        loop = self._loop or asyncio.get_running_loop()
        self._kill_timer = loop.call_later(
            grace + self.settings.kill_margin, self._kill_stragglers)
        self._check_done()

    def _worker_socket(self) -> socket.socket | None:
        if self._sock is None:
            return None
        if not self.reuse_port:
            return self._sock
        host, port = self._sock.getsockname()[:2]
        return bind_socket(host, port, reuse_port=True)

    def _spawn(self, slot: _Slot) -> None:
        slot.restart = None
        if self._state not in ("starting", "running"):
            return
        try:
            sock = self._worker_socket()
        except OSError as exc:
            log.error("worker %d: cannot bind: %s", slot.index, exc)
            self._schedule_restart(slot)
            return
        reader, writer = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=workerproc.child_main,
            args=(self.worker_main, slot.index, sock, writer, self.payload, os.getpid()),
            name=f"wxgated-worker-{slot.index}", daemon=True,
        )
        try:
            proc.start()
        except OSError as exc:
            log.error("worker %d: cannot start a process: %s", slot.index, exc)
            reader.close()
            self._schedule_restart(slot)
            return
        finally:
            writer.close()
            if sock is not None and sock is not self._sock:
                sock.close()  # the worker holds the only copy: its death closes it
        slot.proc, slot.conn, slot.ready = proc, reader, False
        slot.started = time.monotonic()
        assert self._loop is not None
        self._loop.add_reader(proc.sentinel, self._on_exit, slot)
        self._loop.add_reader(reader.fileno(), self._on_message, slot)
        log.info("worker %d started, pid %d", slot.index, proc.pid)

    def _on_message(self, slot: _Slot) -> None:
        assert slot.conn is not None and self._loop is not None
        try:
            msg = slot.conn.recv_bytes()
        except (EOFError, OSError):
            self._loop.remove_reader(slot.conn.fileno())
            return
        if msg == workerproc.MSG_READY:
            slot.ready = True
            workers_serving(sum(s.ready for s in self._slots))
            if slot.hup_when_ready:
                slot.hup_when_ready = False
                self._signal(slot, signal.SIGHUP)
            self._check_started()
        elif msg in (workerproc.MSG_RELOAD_OK, workerproc.MSG_RELOAD_FAILED):
            fut = self._acks.get(slot.pid or 0)
            if fut is not None and not fut.done():
                fut.set_result(msg == workerproc.MSG_RELOAD_OK)

    def _on_exit(self, slot: _Slot) -> None:
        proc = slot.proc
        assert proc is not None and self._loop is not None
        proc.join(0)
        if proc.exitcode is None:  # pipe closed a moment before the process is reapable
            proc.join(0.05)
            if proc.exitcode is None:
                return  # sentinel stays readable; we will be called again
        self._loop.remove_reader(proc.sentinel)
        if slot.conn is not None:
            self._loop.remove_reader(slot.conn.fileno())
            slot.conn.close()
        pid, code = proc.pid, proc.exitcode
        slot.proc, slot.conn, slot.ready = None, None, False
        workers_serving(sum(s.ready for s in self._slots))
        proc.close()
        fut = self._acks.pop(pid or 0, None)
        if fut is not None and not fut.done():
            fut.set_result(True)  # it will not serve the old config any more
        if pid:
            multiproc.process_dead(pid)
        self._after_exit(slot, pid, code)

    def _after_exit(self, slot: _Slot, pid: int | None, code: int | None) -> None:
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
        if time.monotonic() - slot.started >= self.settings.stable_after:
            slot.failures = 0
        self._schedule_restart(slot)

    def _schedule_restart(self, slot: _Slot) -> None:
        slot.failures += 1
        cfg = self.settings
        delay = backoff_delay(slot.failures, cfg.backoff_initial, cfg.backoff_max)
        self.notifier.status(self._status_text(
            f"worker {slot.index} restarting in {delay:.1f}s"))
        assert self._loop is not None
        slot.restart = self._loop.call_later(delay, self._spawn, slot)

    def _signal(self, slot: _Slot, sig: signal.Signals) -> None:
        if slot.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, sig)

    def _kill_all(self) -> None:
        for slot in self._slots:
            if slot.proc is not None:
                self._signal(slot, signal.SIGKILL)

    def _kill_stragglers(self) -> None:
        alive = [s for s in self._slots if s.proc is not None]
        if alive:
            log.warning("%d workers still busy after the grace period: SIGKILL", len(alive))
            self._exit_code = self._exit_code or 1
            self._kill_all()

    def _check_started(self) -> None:
        if all(s.ready for s in self._slots):
            self._all_ready.set()
            if self._state == "running":
                self.notifier.status(self._status_text())

    def _check_done(self) -> None:
        if self._state == "stopping" and all(s.proc is None for s in self._slots):
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            self._done.set()

    async def _queued_reload(self) -> None:
        async with self._reload_lock:
            self._reload_queued = False
            if self._state == "running":
                await self.reload()

    async def _reload_workers(self) -> bool:
        assert self._loop is not None
        waits = []
        for slot in self._slots:
            if slot.proc is None or slot.pid is None:
                continue  # restarting: it reads the current config when it starts
            if not slot.ready:
                slot.hup_when_ready = True  # its SIGHUP handler may not be installed yet
                continue
            fut = self._acks[slot.pid] = self._loop.create_future()
            waits.append(fut)
            self._signal(slot, signal.SIGHUP)
        if not waits:
            return True
        done, pending = await asyncio.wait(waits, timeout=self.settings.reload_timeout)
        for fut in pending:
            fut.cancel()
        self._acks.clear()
        if pending:
            log.warning("%d workers did not confirm the reload in %.0fs",
                        len(pending), self.settings.reload_timeout)
        return not pending and all(f.result() for f in done)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        loop.add_signal_handler(signal.SIGTERM, self.shutdown)
        loop.add_signal_handler(signal.SIGINT, self.shutdown)
        return [signal.SIGHUP, signal.SIGTERM, signal.SIGINT]

    def _status_text(self, extra: str | None = None) -> str:
        live = sum(1 for s in self._slots if s.proc is not None)
        addr = self.address
        where = f"{addr[0]}:{addr[1]}" if addr else "no listener"
        text = f"{live}/{self.worker_count} workers serving on {where}"
        return f"{text}; {extra}" if extra else text
