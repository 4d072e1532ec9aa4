"""The supervisor's listening socket and the socket each worker serves on.

The supervisor binds (so a bad `listen` fails before anything starts and port 0 works)
and hands each worker a socket:
- SO_REUSEPORT (Linux): a fresh socket per worker, bound but not listening; the worker's
  `loop.create_server(sock=...)` calls listen(), so the kernel only routes connections
  to it once it can accept them, and spreads connections evenly across workers. The
  supervisor keeps one bound, never-listening socket to hold the port.
- otherwise: one listening socket, inherited by every worker (accept() races).

Kept apart from the worker table so that the choice between the two modes is made in
one place and the code that starts workers does not care which one is in use.
"""

from __future__ import annotations

import socket

from wxgated.process.workerproc import bind_socket


class WorkerSockets:
    """The port holder (or the shared listener) and the sockets handed to workers."""

    def __init__(self, listen: tuple[str, int] | None, reuse_port: bool) -> None:
        self.listen = listen
        self.reuse_port = reuse_port
        self._sock: socket.socket | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), useful with port 0; None before bind and after close."""
        return self._sock.getsockname()[:2] if self._sock is not None else None

    def bind(self, backlog: int) -> None:
        """Take the port; in inherited mode also listen, since workers never call listen
        on a socket they share."""
        if self.listen is None:
            return
        host, port = self.listen
        self._sock = bind_socket(host, port, reuse_port=self.reuse_port)
        if not self.reuse_port:
            self._sock.listen(backlog)

    def for_worker(self) -> socket.socket | None:
        """The socket a new worker serves on (None when there is no listener); raises
        OSError when a per-worker socket cannot be bound."""
        if self._sock is None:
            return None
        if not self.reuse_port:
            return self._sock
        host, port = self._sock.getsockname()[:2]
        return bind_socket(host, port, reuse_port=True)

    def handed_over(self, sock: socket.socket | None) -> None:
        """Close the supervisor's copy of a per-worker socket once the worker has its own:
        the worker then holds the only copy, so its death closes it."""
        if sock is not None and sock is not self._sock:
            sock.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
