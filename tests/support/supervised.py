"""A stand-in gateway for the supervisor tests, run as a real process tree.

`python -m tests.support.supervised '<json options>'` runs a Supervisor whose workers answer one
line per TCP connection with `pid index reloads payload`, count requests in
wxgated_requests_total, and drain in-flight requests on SIGTERM. The supervisor also
serves `collect_text()` on an admin port, as the real admin listener does.

Options for the reload rules: `ready_delay` (seconds a worker serves, SIGHUP handler
installed, before it reports ready) and `silent` (the worker index that counts a
SIGHUP but never answers it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import sys

from wxgated.observe import multiproc
from wxgated.process import supervisor
from wxgated.process.sdnotify import Notifier


def worker_main(opts: dict, index: int, sock: socket.socket | None) -> None:
    asyncio.run(_serve(opts, index, sock))


def fatal_main(index: int, sock: socket.socket | None) -> None:
    sys.exit(supervisor.FATAL_EXIT)


async def _serve(opts: dict, index: int, sock: socket.socket | None) -> None:
    from wxgated.observe.metrics import REQUESTS

    counter = REQUESTS.labels("t", "GET", "200")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads = 0
    busy: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        busy.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            line = await reader.readline()
            if line.startswith(b"slow "):
                await asyncio.sleep(float(line.split()[1]))
            counter.inc()
            writer.write(f"{os.getpid()} {index} {reloads} {supervisor.worker_payload()}\n"
                         .encode())
            await writer.drain()
            writer.close()
        finally:
            busy.discard(asyncio.current_task())  # type: ignore[arg-type]

    def on_hup() -> None:
        nonlocal reloads
        reloads += 1
        if index != opts.get("silent"):
            supervisor.worker_reloaded(True)

    server = await asyncio.start_server(handle, sock=sock, backlog=512)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await asyncio.sleep(opts.get("ready_delay", 0))
    supervisor.worker_ready()
    await stop.wait()
    server.close()  # stop accepting, let in-flight requests finish
    if busy:
        await asyncio.wait(list(busy), timeout=60)


async def _admin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(multiproc.collect_text())
    await writer.drain()
    writer.close()


async def _main(opts: dict) -> int:
    multiproc.setup(opts["metrics_dir"])
    main = fatal_main if opts.get("fatal") else functools.partial(worker_main, opts)
    settings = supervisor.SupervisorSettings(
        shutdown_grace=opts.get("grace", 10.0), kill_margin=0.5,
        reuse_port=opts.get("reuse_port"), backoff_initial=0.2, backoff_max=1.0)
    sup = supervisor.Supervisor(
        opts["workers"], main, ("127.0.0.1", opts["port"]), settings,
        notifier=Notifier(opts["notify"], unset_env=True), payload="cfg-1",
    )
    admin = await asyncio.start_server(_admin, "127.0.0.1", opts["admin_port"])
    try:
        return await sup.run()
    finally:
        admin.close()
        multiproc.teardown()


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(json.loads(sys.argv[1]))))
