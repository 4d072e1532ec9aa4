"""The worker side of the supervisor (wxgated.process.supervisor), and the listening sockets.

`child_main` is what a spawned worker process runs before the server's `worker_main`:
it detaches from the terminal's process group, arranges to be told when the supervisor
dies, and starts the metrics snapshot thread. The server code calls `worker_ready()`
once it accepts connections and `worker_reloaded(ok)` after handling SIGHUP; both are
no-ops when the process was not started by a supervisor (single-process mode).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from wxgated.observe import multiproc

FATAL_EXIT = 78  # EX_CONFIG: "cannot start at all"; during startup the supervisor gives up
MSG_READY = b"ready"
MSG_RELOAD_OK = b"reloaded"
MSG_RELOAD_FAILED = b"reload-failed"

_channel: Connection | None = None
_payload: Any = None
_index: int | None = None


def worker_ready() -> None:
    """Tell the supervisor this worker accepts connections."""
    _send(MSG_READY)


def worker_reloaded(ok: bool) -> None:
    """Tell the supervisor how this worker's reload (SIGHUP) went."""
    _send(MSG_RELOAD_OK if ok else MSG_RELOAD_FAILED)


def worker_payload() -> Any:
    """What the supervisor's `payload` was when this worker started (None otherwise)."""
    return _payload


def worker_index() -> int | None:
    """0..N-1 under a supervisor, None in single-process mode."""
    return _index


def _send(msg: bytes) -> None:
    if _channel is not None:
        try:
            _channel.send_bytes(msg)
        except OSError:
            pass  # the supervisor is gone; PDEATHSIG is stopping us anyway


def _die_with_parent(sig: int) -> None:
    """Linux PR_SET_PDEATHSIG: a supervisor killed with SIGKILL must not leave orphan
    workers holding the port."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def child_main(
    worker_main: Callable[[int, socket.socket | None], None],
    index: int,
    sock: socket.socket | None,
    channel: Connection,
    payload: Any,
    parent_pid: int,
) -> None:
    global _channel, _payload, _index
    try:
        os.setpgid(0, 0)  # Ctrl-C in a terminal goes to the supervisor only
    except OSError:
        pass
    _die_with_parent(signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(1)  # the supervisor died before PDEATHSIG was armed
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        os.environ.pop(key, None)  # only the supervisor speaks to systemd
    _channel, _payload, _index = channel, payload, index
    multiproc.attach()
    try:
        worker_main(index, sock)
    finally:
        multiproc.teardown()  # last snapshot: a clean exit loses no increments
        channel.close()
        _channel = None


def parse_listen(addr: str | tuple[str, int]) -> tuple[str, int]:
    """'0.0.0.0:8080', '[::]:8080', ':8080' or (host, port) → (host, port)."""
    if isinstance(addr, tuple):
        return addr
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def reuse_port_available() -> bool:
    if not hasattr(socket, "SO_REUSEPORT"):
        return False
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        return False
    return True


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound, not yet listening TCP socket (the worker's create_server listens)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
