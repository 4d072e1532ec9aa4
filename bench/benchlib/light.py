"""Light traffic at a fixed rate, for bench/connections.py: latency of a few keep-alive
clients while the gateway holds many idle connections, next to the same without them.

    python light.py PORT RATE SECONDS CONNECTIONS PATH [PATH ...]

One thread and one selector drive CONNECTIONS keep-alive connections: GETs fall due on a
fixed schedule (RATE per second in all), round-robin over the connections, each
connection taking the paths in turn; one due while its connection is busy waits for it.
A request's latency runs from the time it was *due*, not sent, so a stall of the
gateway shows in full instead of delaying the next sends (no coordinated omission). No
threads: a GIL hand-over can wait a whole switch interval (5 ms), which would be the
client's latency, not the gateway's. It runs SECONDS, or until SIGTERM,
then prints one JSON line: per path, count and p50/p99/max in ms, and the errors.

wrk is closed-loop: it saturates the gateway, so its latencies mirror throughput. At a
low fixed rate the gateway is mostly idle and the latency is what a user would see.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import sys
import time
from collections import deque

_stopped = False


def _stop(*_: object) -> None:
    global _stopped
    _stopped = True


def _answer_length(got: bytes) -> int | None:
    """The whole answer's length once its head is in (Content-Length framed), else None."""
    end = got.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = got[:end].lower()
    at = head.index(b"\r\ncontent-length:")
    return end + 4 + int(head[at + 17:].split(b"\r\n", 1)[0])


class Conn:
    """One keep-alive connection: one request at a time, the others due wait in order."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.waiting: deque[tuple[float, int]] = deque()  # (due, path index)
        self.current: tuple[float, int] | None = None
        self.got = b""


class Light:
    def __init__(self, port: int, conns: int, paths: list[str]) -> None:
        self.paths = paths
        self.requests = [f"GET {p} HTTP/1.1\r\nHost: bench\r\n\r\n".encode() for p in paths]
        self.sel = selectors.DefaultSelector()
        self.conns = [Conn(port) for _ in range(conns)]
        for c in self.conns:
            self.sel.register(c.sock, selectors.EVENT_READ, c)
        self.latencies: dict[str, list[float]] = {p: [] for p in paths}
        self.errors: list[str] = []

    def run(self, rate: float, seconds: float) -> None:
        start = time.monotonic()
        k = 0
        while not _stopped:
            due = start + k / rate
            if due - start >= seconds:
                if all(c.current is None for c in self.conns):
                    break
                due = float("inf")
            now = time.monotonic()
            if due <= now:  # request k: connection k mod n, the paths in turn on each
                c = self.conns[k % len(self.conns)]
                c.waiting.append((due, (k // len(self.conns)) % len(self.paths)))
                k += 1
                if c.current is None:
                    self._send(c)
                continue
            for key, _ in self.sel.select(min(due - now, 0.5)):
                self._read(key.data)

    def _send(self, c: Conn) -> None:
        c.current = c.waiting.popleft()
        c.sock.send(self.requests[c.current[1]])

    def _read(self, c: Conn) -> None:
        try:
            chunk = c.sock.recv(65536)
        except BlockingIOError:
            return
        if not chunk:
            raise ConnectionError("the gateway closed a light-traffic connection")
        c.got += chunk
        length = _answer_length(c.got)
        if length is None or len(c.got) < length or c.current is None:
            return
        due, i = c.current
        self.latencies[self.paths[i]].append((time.monotonic() - due) * 1000)
        if not c.got.startswith(b"HTTP/1.1 200 "):
            self.errors.append(f"{self.paths[i]}: {c.got[:20]!r}")
        c.got, c.current = c.got[length:], None
        if c.waiting:
            self._send(c)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def main(argv: list[str]) -> int:
    port, rate, seconds, conns = int(argv[0]), float(argv[1]), float(argv[2]), int(argv[3])
    signal.signal(signal.SIGTERM, _stop)
    light = Light(port, conns, argv[4:])
    t0 = time.monotonic()
    try:
        light.run(rate, seconds)
    except OSError as exc:
        light.errors.append(repr(exc))
    result = {p: {"n": len(v), "p50": _pct(v, 0.50), "p99": _pct(v, 0.99),
                  "max": max(v, default=0.0)} for p, v in light.latencies.items()}
    print(json.dumps({"paths": result, "errors": len(light.errors),
                      "first_error": light.errors[0] if light.errors else "",
                      "seconds": round(time.monotonic() - t0, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
