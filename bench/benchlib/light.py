"""Light traffic at a fixed rate, for bench/connections.py: latency of a few keep-alive
clients while the gateway holds many idle connections, next to the same without them.

    python light.py PORT RATE SECONDS CONNECTIONS PATH [PATH ...]

CONNECTIONS threads, each with its own keep-alive connection, send GETs on a fixed
schedule (RATE per second in all) and take the paths in turn. A request's latency runs
from the time it was *due*, not sent, so a stall of the gateway shows in full instead of
delaying the next sends (no coordinated omission). It runs SECONDS, or until SIGTERM,
then prints one JSON line: per path, count and p50/p99/max in ms, and the errors.

wrk is closed-loop: it saturates the gateway, so its latencies mirror throughput. At a
low fixed rate the gateway is mostly idle and the latency is what a user would see.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time

_stop = threading.Event()


def _read_answer(s: socket.socket) -> bool:
    """Read one whole answer (Content-Length framed); True when it was a 200."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        got += chunk
    end = got.index(b"\r\n\r\n")
    head = got[:end].lower()
    at = head.index(b"\r\ncontent-length:")
    length = int(head[at + 17:].split(b"\r\n", 1)[0])
    while len(got) - end - 4 < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        got += chunk
    return got.startswith(b"HTTP/1.1 200 ")


def client(port: int, interval: float, offset: float, start: float, deadline: float,
           paths: list[str], out: dict[str, list[float]], errors: list[str]) -> None:
    requests = [f"GET {p} HTTP/1.1\r\nHost: bench\r\n\r\n".encode() for p in paths]
    s: socket.socket | None = None
    k = 0
    while not _stop.is_set():
        due = start + offset + k * interval
        if due >= deadline:
            break
        path = paths[k % len(paths)]
        req = requests[k % len(paths)]
        k += 1
        wait = due - time.monotonic()
        if wait > 0 and _stop.wait(wait):
            break
        try:
            if s is None:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(req)
            ok = _read_answer(s)
            out[path].append((time.monotonic() - due) * 1000)
            if not ok:
                errors.append(f"{path}: not 200")
        except OSError as exc:
            errors.append(f"{path}: {exc!r}")
            if s is not None:
                s.close()
            s = None
    if s is not None:
        s.close()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def main(argv: list[str]) -> int:
    port, rate, seconds, conns = int(argv[0]), float(argv[1]), float(argv[2]), int(argv[3])
    paths = argv[4:]
    signal.signal(signal.SIGTERM, lambda *_: _stop.set())
    interval = conns / rate  # each connection's period
    start = time.monotonic() + 0.05
    deadline = start + seconds
    out: dict[str, list[float]] = {p: [] for p in paths}
    errors: list[str] = []
    threads = [threading.Thread(target=client, args=(port, interval, i * interval / conns,
                                                     start, deadline, paths, out, errors))
               for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)
    result = {p: {"n": len(v), "p50": _pct(v, 0.50), "p99": _pct(v, 0.99),
                  "max": max(v, default=0.0)} for p, v in out.items()}
    print(json.dumps({"paths": result, "errors": len(errors),
                      "first_error": errors[0] if errors else "",
                      "seconds": round(time.monotonic() - start, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
