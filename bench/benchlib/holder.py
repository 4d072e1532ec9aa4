"""One client process of bench/connections.py: opens keep-alive connections to the
gateway, has each serve one request, then holds them idle.

    python holder.py PORT PATH SOURCES CONCURRENCY

Run by connections.py, one per `--clients`, each under the per-process fd limit. It
reads commands on stdin and answers each with one JSON line on stdout:

- `open N`: open N more connections (at most CONCURRENCY connecting at a time), each
  bound to the next of SOURCES (comma-separated 127.x.y.z, IP_BIND_ADDRESS_NO_PORT, so
  every source address has its own ephemeral port range), send `GET PATH` with a mini
  program's usual headers, read the whole answer and keep the socket. Answers `{"held", "opened", "failed", "error",
  "seconds"}`.
- `status`: how many are held, and how many the gateway has closed since (a one-shot
  poll over the held fds).
- `close`: reset every held connection (SO_LINGER 0: no TIME_WAIT left behind for the
  next run) and exit.

While holding, the process sleeps in a blocking read of stdin: idle connections cost
it no CPU, and it keeps no Python object per held connection, only its fd in an array.
"""

from __future__ import annotations

import array
import errno
import json
import os
import select
import socket
import struct
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
ANSWER_TIMEOUT = 60.0  # seconds a connection may take to connect and be answered
_LINGER_RESET = struct.pack("ii", 1, 0)


# What a mini program's wx.request sends (iOS WeChat 8.0), with a 300-byte bearer token:
# the gateway keeps the head it parsed last, so an idle connection's memory depends on it.
_HEADERS = (
    "Host: bench.example.com\r\n"
    "Connection: keep-alive\r\n"
    "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49(0x18003129) NetType/WIFI "
    "Language/zh_CN\r\n"
    "Referer: https://servicewechat.com/wx1234567890abcdef/42/page-frame.html\r\n"
    "Content-Type: application/json\r\n"
    "Accept-Encoding: gzip,compress,br,deflate\r\n"
    "Authorization: Bearer " + "eyJhbGciOiJIUzI1NiJ9." + "x" * 256 + ".sig0123456789\r\n"
)


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\n{_HEADERS}\r\n".encode()


class Holder:
    """The held fds, and the few connections being opened (bounded by `concurrency`)."""

    def __init__(self, port: int, path: str, sources: list[str], concurrency: int) -> None:
        self.dest = ("127.0.0.1", port)
        self.request = request(path)
        self.sources = sources
        self.concurrency = concurrency
        self.held = array.array("i")
        self.lost = 0
        self._next_source = 0

    def open(self, count: int) -> dict[str, object]:
        t0 = time.monotonic()
        ep = select.epoll()
        # fd -> [socket, answer read so far (None: connecting), started]: only the
        # connections in flight
        flight: dict[int, list[object]] = {}
        todo, opened, failed, error = count, 0, 0, ""
        try:
            while todo or flight:
                while todo and len(flight) < self.concurrency:
                    todo -= 1
                    try:
                        s = self._connect()
                    except OSError as exc:
                        failed += 1
                        error = error or f"connect: {exc}"
                        continue
                    flight[s.fileno()] = [s, None, time.monotonic()]
                    ep.register(s.fileno(), select.EPOLLOUT)
                for fd, _ in ep.poll(1.0):
                    done, why = self._step(ep, fd, flight[fd])
                    if done:
                        del flight[fd]
                        if why:
                            failed += 1
                            error = error or why
                        else:
                            opened += 1
                failed, error = self._expire(ep, flight, failed, error)
        finally:
            for entry in flight.values():
                _reset(entry[0])  # type: ignore[arg-type]
            ep.close()
        return {"held": len(self.held), "opened": opened, "failed": failed, "error": error,
                "seconds": round(time.monotonic() - t0, 3)}

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((self.sources[self._next_source], 0))
            self._next_source = (self._next_source + 1) % len(self.sources)
            rc = s.connect_ex(self.dest)
            if rc not in (0, errno.EINPROGRESS):
                raise OSError(rc, os.strerror(rc))
        except OSError:
            s.close()
            raise
        return s

    def _step(self, ep: select.epoll, fd: int, entry: list[object]) -> tuple[bool, str]:
        """Advance one connection: connected → request sent → whole answer read.
        Returns (finished, why it failed or "")."""
        s: socket.socket = entry[0]  # type: ignore[assignment]
        if entry[1] is None:  # connecting
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return self._fail(ep, s, f"connect: {os.strerror(err)}")
            try:
                s.send(self.request)
            except OSError as exc:
                return self._fail(ep, s, f"send: {exc}")
            entry[1] = b""
            ep.modify(fd, select.EPOLLIN)
            return False, ""
        try:
            chunk = s.recv(65536)
        except BlockingIOError:
            return False, ""
        except OSError as exc:
            return self._fail(ep, s, f"recv: {exc}")
        if not chunk:
            return self._fail(ep, s, "closed before the answer")
        got = entry[1] + chunk  # type: ignore[operator]
        entry[1] = got
        complete = _complete(got)
        if complete is None:
            return False, ""
        ep.unregister(fd)
        if not complete:
            _reset(s)
            return True, f"answer {got[:40]!r}"
        self.held.append(s.detach())
        return True, ""

    def _fail(self, ep: select.epoll, s: socket.socket, why: str) -> tuple[bool, str]:
        ep.unregister(s.fileno())
        _reset(s)
        return True, why

    def _expire(self, ep: select.epoll, flight: dict[int, list[object]], failed: int,
                error: str) -> tuple[int, str]:
        cutoff = time.monotonic() - ANSWER_TIMEOUT
        for fd in [fd for fd, e in flight.items() if e[2] < cutoff]:  # type: ignore[operator]
            self._fail(ep, flight.pop(fd)[0], "")  # type: ignore[arg-type]
            failed += 1
            error = error or f"no answer in {ANSWER_TIMEOUT:g} s"
        return failed, error

    def status(self) -> dict[str, object]:
        """Count (and drop) the held connections the gateway has closed: they poll
        readable (EOF or an unexpected answer) or hung up."""
        if self.held:
            p = select.poll()
            for fd in self.held:
                p.register(fd, select.POLLIN | select.POLLRDHUP)
            gone = {fd for fd, _ in p.poll(0)}
            if gone:
                for fd in gone:
                    os.close(fd)
                self.lost += len(gone)
                self.held = array.array("i", (fd for fd in self.held if fd not in gone))
        return {"held": len(self.held), "lost": self.lost}

    def close(self) -> dict[str, object]:
        n = len(self.held)
        for fd in self.held:
            _reset(socket.socket(fileno=fd))
        self.held = array.array("i")
        return {"closed": n}


def _complete(got: bytes) -> bool | None:
    """None: more to read; True: a whole 200 answer; False: anything else."""
    end = got.find(b"\r\n\r\n")
    if end < 0:
        return None
    if not got.startswith(b"HTTP/1.1 200 "):
        return False
    head = got[:end].lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return False  # the bench's routes always send a length
    length = int(head[at + 17:].split(b"\r\n", 1)[0])
    if len(got) - end - 4 < length:
        return None
    return True


def _reset(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    s.close()


def main(argv: list[str]) -> int:
    port, path, sources, concurrency = argv
    holder = Holder(int(port), path, sources.split(","), int(concurrency))
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "open":
            out = holder.open(int(arg))
        elif cmd == "status":
            out = holder.status()
        elif cmd == "close":
            print(json.dumps(holder.close()), flush=True)
            return 0
        else:
            out = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(out), flush=True)
    holder.close()  # the parent went away: let go of everything
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
