"""Trace ids: take the caller's, else the W3C traceparent's, else make one (docs/CONFIG.md)."""

from __future__ import annotations

import hashlib
import os
from random import getrandbits

_MAX_LEN = 128
_BATCH = 128  # fresh ids made at once
_TOP = 1 << (128 * _BATCH)  # keeps the leading zeros of the random bits in their hex()


class _FreshIds:
    """128 random bits as 32 lower-case hex digits: unique, not secret. Made _BATCH at a
    time from one getrandbits and one hex(), and handed out as slices (one id at a time
    cost ~0.5 µs a request)."""

    __slots__ = ("digits", "at")

    def __init__(self) -> None:
        self.digits = ""  # a str: slicing one compiles to a substring, a bytes' does not
        self.at = 0

    def take(self) -> str:
        at = self.at
        if at >= len(self.digits):
            self.digits = hex(getrandbits(128 * _BATCH) | _TOP)[3:]
            at = 0
        self.at = at + 32
        return self.digits[at:at + 32]

    def drop(self) -> None:
        self.digits = ""


_FRESH = _FreshIds()
os.register_at_fork(after_in_child=_FRESH.drop)  # a forked worker never repeats its parent's


def trace_id_for(x_trace_id: bytes | None, traceparent: bytes | None) -> tuple[str, bytes]:
    """The request's trace id, and its W3C form (32 lower-case hex) when the id already
    is one (ours, or a traceparent's), else b"": then `http.headers.trace_hex` derives
    it. Knowing it here spares the usual request validating its own id again."""
    if x_trace_id:
        tid = x_trace_id.decode("latin-1").strip()
        if 0 < len(tid) <= _MAX_LEN and tid.isprintable() and '"' not in tid and "\\" not in tid:
            return tid, b""
    if traceparent:
        parts = traceparent.split(b"-")
        if len(parts) >= 4 and len(parts[1]) == 32 and parts[1] != b"0" * 32:
            try:
                int(parts[1], 16)
                w3c = parts[1].lower()
                return w3c.decode(), w3c
            except ValueError:
                pass
    tid = _FRESH.take()
    return tid, tid.encode()


def new_trace_id() -> str:
    return _FRESH.take()


def trace_hex(trace_id: str) -> bytes:
    """The 32-hex W3C trace-id for our trace id (hashed when it is not one already), so
    the upstream's traceparent and the exported spans name the same trace."""
    if len(trace_id) == 32:
        try:
            int(trace_id, 16)
            return trace_id.lower().encode()
        except ValueError:
            pass
    return hashlib.md5(trace_id.encode(), usedforsecurity=False).hexdigest().encode()
