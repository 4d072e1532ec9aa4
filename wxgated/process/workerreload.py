"""Carrying a reload to the workers: SIGHUP to each, and waiting for their answers.

A worker answers over its pipe (`worker_reloaded(ok)`) after handling SIGHUP; the
supervisor's RELOADING=1 only ends once every worker answered, so systemd's view
matches what the workers actually serve. The edge cases each have one rule:
- a worker still starting has no SIGHUP handler yet: it gets the signal once it
  reports ready (and reads the new config at start anyway);
- a worker with no process (waiting for a restart) reads the config when it starts;
- a worker that exits while the supervisor waits counts as done: it will not serve
  the old config any more;
- a shutdown ends the wait with "not reloaded".
"""

from __future__ import annotations

import asyncio
import logging
import signal

from wxgated.process.workerpool import Slot, WorkerPool

log = logging.getLogger("wxgated.process.supervisor")  # one logger name for the model


class ReloadFanout:
    """SIGHUP to the pool's workers and the bookkeeping of their answers."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool
        self._acks: dict[int, asyncio.Future[bool]] = {}  # pid → its answer
        self._deferred: set[int] = set()  # slot indexes to signal once ready

    async def run(self, timeout: float) -> bool:
        """Signal every ready worker; True when all answered ok within `timeout`."""
        loop = asyncio.get_running_loop()
        waits = []
        for slot in self._pool.slots:
            if slot.proc is None or slot.pid is None:
                continue  # restarting: it reads the current config when it starts
            if not slot.ready:
                self._deferred.add(slot.index)  # its SIGHUP handler may not be installed yet
                continue
            fut = self._acks[slot.pid] = loop.create_future()
            waits.append(fut)
            self._pool.send_signal(slot, signal.SIGHUP)
        if not waits:
            return True
        done, pending = await asyncio.wait(waits, timeout=timeout)
        for fut in pending:
            fut.cancel()
        self._acks.clear()
        if pending:
            log.warning("%d workers did not confirm the reload in %.0fs", len(pending), timeout)
        return not pending and all(f.result() for f in done)

    def worker_ready(self, slot: Slot) -> None:
        """Send the SIGHUP a reload held back while this worker was starting."""
        if slot.index in self._deferred:
            self._deferred.discard(slot.index)
            self._pool.send_signal(slot, signal.SIGHUP)

    def answered(self, slot: Slot, ok: bool) -> None:
        fut = self._acks.get(slot.pid or 0)
        if fut is not None and not fut.done():
            fut.set_result(ok)

    def worker_gone(self, pid: int | None) -> None:
        fut = self._acks.pop(pid or 0, None)
        if fut is not None and not fut.done():
            fut.set_result(True)  # it will not serve the old config any more

    def abandon(self) -> None:
        """Shutting down: whoever still waits for answers hears "not reloaded"."""
        for fut in self._acks.values():
            if not fut.done():
                fut.set_result(False)
