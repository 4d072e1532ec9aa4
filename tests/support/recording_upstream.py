"""A raw upstream that records the exact bytes it receives and judges them strictly.

aiohttp would parse (and forgive) what a hostile client smuggled through; this server
reads heads byte for byte, answers each request it can read, and keeps every head as
received, so a test can say "the upstream got exactly this, and nothing else".
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

# RFC 9112: method SP origin-form SP HTTP/1.1; field-name ":" OWS field-value
_REQUEST_LINE = re.compile(rb"[A-Z]+ /[\x21-\x7e]* HTTP/1\.1")
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+): ?([\x20-\x7e\x80-\xff\t]*)")


@dataclass
class Received:
    """One request as the upstream read it."""

    raw: bytes
    method: str = ""
    target: str = ""
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    well_formed: bool = True

    def values(self, name: str) -> list[bytes]:
        return [v for k, v in self.headers if k == name.lower()]


def parse_head(raw: bytes) -> Received:
    """A head (without its blank line) judged as a strict origin server would."""
    got = Received(raw)
    line, *fields = raw.split(b"\r\n")
    if not _REQUEST_LINE.fullmatch(line):
        got.well_formed = False
    else:
        method, target, _ = line.split(b" ")
        got.method, got.target = method.decode(), target.decode()
    for f in fields:
        m = _FIELD.fullmatch(f)
        if m is None:
            got.well_formed = False
            continue
        got.headers.append((m.group(1).decode().lower(), m.group(2)))
    if len(got.values("host")) != 1 or b"\n" in raw.replace(b"\r\n", b""):
        got.well_formed = False
    return got


def read_head(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    """The next head on `conn` (without its blank line) and what follows it; None when
    the connection ends first."""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


class RawUpstream:
    """A threaded raw socket server on 127.0.0.1: one thread per connection runs
    `_serve(conn)`, which subclasses write."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class RecordingUpstream(RawUpstream):
    """Answers every request with 200 and `ok`; `received` holds what it read."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        super().__init__()

    def take(self) -> list[Received]:
        """What arrived since the last take."""
        with self.lock:
            out, self.received = self.received, []
        return out

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while (got_head := read_head(conn, buf)) is not None:
                head, buf = got_head
                got = parse_head(head)
                length = got.values("content-length")
                need = int(length[0]) if length and length[0].isdigit() else 0
                while len(buf) < need:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[need:]
                with self.lock:
                    self.received.append(got)
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                except OSError:
                    return
