"""The supervisor's table of worker processes: starting them, hearing from them, reaping
them, and restarting them with backoff.

Workers are started with multiprocessing's **spawn** context, not fork. The supervisor
runs an event loop (admin listener, signal handlers, the sd_notify watchdog, maybe a
file watcher thread) and restarts workers while all that is live. A fork would copy
the loop's epoll fd, its signal wakeup fd, uvloop's libuv state and any thread-held
locks into the child, and the child would share the epoll instance with the parent.
Spawn starts a clean interpreter; it costs a few hundred ms per worker start, which
only matters at startup and after a crash. `worker_main` must therefore be importable
(a module-level function) and the socket travels to the child as a duplicated fd.

The pool decides nothing about the supervisor's state: it reports each worker that
becomes ready, answers a reload or exits through `PoolEvents`, and the supervisor says
whether an exit is a crash to restart (`restart_crashed`) or part of a stop.
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
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from wxgated.observe import multiproc
from wxgated.process import workerproc
from wxgated.process.startup import workers_serving
from wxgated.process.workersockets import WorkerSockets

log = logging.getLogger("wxgated.process.supervisor")  # one logger name for the model

WorkerMain = Callable[[int, "socket.socket | None"], None]


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """Seconds before restarting a worker that failed `failures` times in a row."""
    return float(min(cap, initial * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class RestartPolicy:
    """How quickly a crashed worker comes back: fast after a one-off crash, ever slower
    (up to `backoff_max`) while it keeps crashing, so a worker that cannot serve does
    not burn the CPU the others need."""

    backoff_initial: float = 0.5  # first restart delay; doubles per consecutive failure
    backoff_max: float = 30.0
    stable_after: float = 10.0  # a worker that lived this long resets its failure count


@dataclass
class Slot:
    """One worker position (0..N-1); its process changes with every restart."""

    index: int
    proc: BaseProcess | None = None
    conn: Connection | None = None
    started: float = 0.0
    failures: int = 0
    ready: bool = False
    restart: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


@dataclass(frozen=True)
class PoolEvents:
    """What the pool tells its owner; called on the event loop."""

    ready: Callable[[Slot], None]  # the worker accepts connections now
    answered: Callable[[Slot, bool], None]  # the worker finished a reload (ok or not)
    exited: Callable[[Slot, int | None, int | None], None]  # (slot, pid, exit code)
    restarting: Callable[[Slot, float], None]  # a start is due in that many seconds


class WorkerPool:
    """`count` slots, each running `worker_main(index, sock)` in a spawned process."""

    def __init__(self, count: int, worker_main: WorkerMain, sockets: WorkerSockets,
                 policy: RestartPolicy, events: PoolEvents, payload: Any = None) -> None:
        self.worker_main = worker_main
        self.sockets = sockets
        self.policy = policy
        self.events = events
        self.payload = payload  # given to every worker started from now on
        self.slots = [Slot(i) for i in range(count)]
        self._ctx = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = True

    @property
    def live(self) -> int:
        """Workers with a process (ready or still starting)."""
        return sum(1 for s in self.slots if s.proc is not None)

    @property
    def serving(self) -> int:
        """Workers that reported ready."""
        return sum(s.ready for s in self.slots)

    @property
    def pids(self) -> dict[int, int]:
        """Worker index → pid of the live process."""
        return {s.index: s.pid for s in self.slots if s.proc is not None and s.pid}

    def all_ready(self) -> bool:
        return all(s.ready for s in self.slots)

    def all_gone(self) -> bool:
        return all(s.proc is None for s in self.slots)

    def spawn_all(self) -> None:
        """Start every slot; must run on the loop that will watch the workers."""
        self._loop = asyncio.get_running_loop()
        for slot in self.slots:
            self.spawn(slot)

    def spawn(self, slot: Slot) -> None:
        """Start the slot's worker; a failure to bind or fork is retried with backoff
        instead of raising, since this also runs from a restart timer."""
        slot.restart = None
        if not self._accepting:
            return
        try:
            sock = self.sockets.for_worker()
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
            self.sockets.handed_over(sock)
        slot.proc, slot.conn, slot.ready = proc, reader, False
        slot.started = time.monotonic()
        assert self._loop is not None
        self._loop.add_reader(proc.sentinel, self._on_exit, slot)
        self._loop.add_reader(reader.fileno(), self._on_message, slot)
        log.info("worker %d started, pid %d", slot.index, proc.pid)

    def restart_crashed(self, slot: Slot) -> None:
        """Schedule the slot's next start; a worker that had run for `stable_after`
        crashed once rather than in a loop, so its backoff starts over."""
        if time.monotonic() - slot.started >= self.policy.stable_after:
            slot.failures = 0
        self._schedule_restart(slot)

    def stop_restarts(self) -> None:
        """No more starts: pending restarts are cancelled and later ones refused."""
        self._accepting = False
        for slot in self.slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None

    def send_signal(self, slot: Slot, sig: signal.Signals) -> None:
        """Signal the slot's worker; one that has just died is not an error."""
        if slot.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, sig)

    def signal_all(self, sig: signal.Signals) -> None:
        for slot in self.slots:
            if slot.proc is not None:
                self.send_signal(slot, sig)

    def _schedule_restart(self, slot: Slot) -> None:
        slot.failures += 1
        delay = backoff_delay(slot.failures, self.policy.backoff_initial,
                              self.policy.backoff_max)
        self.events.restarting(slot, delay)
        assert self._loop is not None
        slot.restart = self._loop.call_later(delay, self.spawn, slot)

    def _on_message(self, slot: Slot) -> None:
        assert slot.conn is not None and self._loop is not None
        try:
            msg = slot.conn.recv_bytes()
        except (EOFError, OSError):
            self._loop.remove_reader(slot.conn.fileno())
            return
        if msg == workerproc.MSG_READY:
            slot.ready = True
            workers_serving(self.serving)
            self.events.ready(slot)
        elif msg in (workerproc.MSG_RELOAD_OK, workerproc.MSG_RELOAD_FAILED):
            self.events.answered(slot, msg == workerproc.MSG_RELOAD_OK)

    def _on_exit(self, slot: Slot) -> None:
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
        workers_serving(self.serving)
        proc.close()
        if pid:
            multiproc.process_dead(pid)
        self.events.exited(slot, pid, code)
