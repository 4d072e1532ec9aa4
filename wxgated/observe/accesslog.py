"""One JSON line per request on stdout, preformatted and written in batches.

json.dumps of a whole dict costs several µs per request, so the line is formatted by
hand. Every string field is escaped by `_escaped` whatever its source: the path and
trace id are the client's, route/upstream names and target URLs come from a config
file, and a field that "cannot" hold a quote is one refactor away from one. One bad
field would break the line for every log reader, or forge fields in it. The quoting
costs one C-speed check of all fields joined when nothing needs escaping (the usual
case).

A refusal the gateway made itself carries `reason`, a word of a fixed vocabulary set
in code (HTTPError.reason, docs/OPERATIONS.md), never the client's bytes, so it is
written without escaping; an answered request has none and pays one truth test.

Lines are buffered and written together once per loop tick (or every 256 lines),
which turns N write syscalls into one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

_MAX_BATCH = 256
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # a table: formatting them cost ~1 µs
_FRACTION = tuple(f"{n:03d}" for n in range(1000))  # the same for the decimals of a duration
# what cannot sit between JSON quotes as it is: controls, DEL, `"` and `\`
_UNPLAIN = bytes(range(0x20)) + b'"\\\x7f'


def _plain(text: str) -> bool:
    """Can `text` sit between JSON quotes as it is: printable ASCII without `"` or `\\`
    (isascii is O(1); bytes.translate runs at memory speed, where isprintable looks
    each character up in the Unicode tables)."""
    if not text.isascii():
        return False
    data = text.encode()  # ASCII: utf-8 is the fast encode
    return len(data.translate(None, _UNPLAIN)) == len(data)


def _three_places(value: float) -> str:
    """A non-negative `value` with three decimals, formatted from integers (a float's
    ".3f" cost a µs a line)."""
    thousandths = int(value * 1000.0 + 0.5)
    return f"{thousandths // 1000}.{_FRACTION[thousandths % 1000]}"


def _escaped(fields: tuple[str, ...]) -> tuple[str, ...]:
    """The fields as JSON string contents (without the quotes), pure ASCII: \\uXXXX for
    controls, non-ASCII and lone surrogates (a latin-1-decoded path byte or a surrogate
    could not even be written as UTF-8). `log` calls it only when `_plain` of all the
    fields joined says no, so the usual line never pays for json.dumps."""
    return tuple(json.dumps(f)[1:-1] for f in fields)


class AccessLog:
    def __init__(self, enabled: bool = True, fd: int | None = None) -> None:
        self.enabled = enabled
        self.fd = sys.stdout.fileno() if fd is None else fd
        self._buf: list[str] = []
        self._scheduled = False
        self._sec = -1
        self._sec_text = ""
        self._pid = f',"pid":{os.getpid()}}}\n'  # which worker served it
        # asyncio.get_running_loop() makes a getpid system call on CPython 3.11 (its
        # fork check): looked up once per loop, not once per logged request
        self._loop: Any = None

    def _ts(self, now: float) -> str:
        sec = int(now)
        if sec != self._sec:
            self._sec = sec
            self._sec_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return self._sec_text + _MILLIS[int((now - sec) * 1000)]

    def log(self, req: Any, status: int, bytes_in: int, bytes_out: int, duration: float) -> None:
        if not self.enabled:
            return
        up_ms = req.upstream_ms
        fields: tuple[str, ...] = (req.trace_id, req.route.name if req.route is not None else "", req.method,
                                   req.orig_path, req.upstream, req.target, req.client_ip)
        if not _plain("".join(fields)):
            fields = _escaped(fields)
        trace, route, method, path, upstream, target, ip = fields
        line = (
            f'{{"ts":"{self._ts(time.time())}","trace_id":"{trace}",'
            f'"route":"{route}","method":"{method}","path":"{path}",'
            f'"status":{status},"upstream":"{upstream}","target":"{target}",'
            f'"duration_ms":{_three_places(duration * 1000.0)},'
            f'"upstream_ms":{"null" if not up_ms >= 0 else _three_places(up_ms)},'
            f'"bytes_in":{bytes_in},"bytes_out":{bytes_out},"client_ip":"{ip}"'
            + (self._pid if not req.reason else f',"reason":"{req.reason}"' + self._pid)
        )
        self._buf.append(line)
        if len(self._buf) >= _MAX_BATCH:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None or loop.is_closed():
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)

    def event(self, level: str, msg: str, **fields: Any) -> None:
        """A non-request log line (reloads, errors), in the same JSON-lines stream."""
        doc = {"ts": self._ts(time.time()), "level": level, "msg": msg, **fields}
        self._buf.append(json.dumps(doc, ensure_ascii=False, default=str) + "\n")
        self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if not self._buf:
            return
        # request lines are ASCII; an event's text may hold a lone surrogate, which can
        # only be inside a JSON string, where backslashreplace's \\udXXX is a valid escape
        data = "".join(self._buf).encode("utf-8", "backslashreplace")
        self._buf.clear()
        try:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except BlockingIOError:
            pass  # a stuck log reader must not stall the gateway; drop the batch
        except OSError:
            self.enabled = False
