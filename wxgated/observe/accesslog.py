"""One JSON line per request on stdout, preformatted and written in batches.

json.dumps of a whole dict costs several µs per request; the fields here are numbers
and strings we control, so only the client-supplied strings (path, trace id) go
through the JSON encoder. Lines are buffered and written together once per loop tick
(or every 256 lines), which turns N write syscalls into one.
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


def _json_str(text: str) -> str:
    """A JSON string literal; the common plain-ASCII case skips the encoder."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


class AccessLog:
    def __init__(self, enabled: bool = True, fd: int | None = None) -> None:
        self.enabled = enabled
        self.fd = sys.stdout.fileno() if fd is None else fd
        self._buf: list[str] = []
        self._scheduled = False
        self._sec = -1
        self._sec_text = ""
        self._pid = f',"pid":{os.getpid()}}}\n'  # which worker served it

    def _ts(self, now: float) -> str:
        sec = int(now)
        if sec != self._sec:
            self._sec = sec
            self._sec_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return self._sec_text + _MILLIS[int((now - sec) * 1000)]

    def log(self, req: Any, status: int, bytes_in: int, bytes_out: int, duration: float) -> None:
        if not self.enabled:
            return
        route = req.route.name if req.route is not None else ""
        up_ms = req.upstream_ms
        line = (
            # trace ids are safe as they are (trace_id_for admits printable, quote-free ones)
            f'{{"ts":"{self._ts(time.time())}","trace_id":"{req.trace_id}",'
            f'"route":"{route}","method":"{req.method}","path":{_json_str(req.orig_path)},'
            f'"status":{status},"upstream":"{req.upstream}","target":"{req.target}",'
            f'"duration_ms":{duration * 1000.0:.3f},'
            f'"upstream_ms":{"null" if up_ms < 0 else format(up_ms, ".3f")},'
            f'"bytes_in":{bytes_in},"bytes_out":{bytes_out},"client_ip":"{req.client_ip}"'
            + self._pid
        )
        self._buf.append(line)
        if len(self._buf) >= _MAX_BATCH:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def event(self, level: str, msg: str, **fields: Any) -> None:
        """A non-request log line (reloads, errors), in the same JSON-lines stream."""
        doc = {"ts": self._ts(time.time()), "level": level, "msg": msg, **fields}
        self._buf.append(json.dumps(doc, ensure_ascii=False, default=str) + "\n")
        self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if not self._buf:
            return
        data = "".join(self._buf).encode()
        self._buf.clear()
        try:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except BlockingIOError:
            pass  # a stuck log reader must not stall the gateway; drop the batch
        except OSError:
            self.enabled = False
