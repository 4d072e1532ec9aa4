"""Trace ids: take the caller's, else the W3C traceparent's, else make one (docs/CONFIG.md)."""

from __future__ import annotations

import hashlib
from random import getrandbits

_MAX_LEN = 128
_TOP = 1 << 128  # keeps the leading zeros of a 128-bit value in its hex()


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
    # unique, not secret; hex() of the value with a bit above it set (then cut off)
    # takes 60% of the time of "%032x" (and inline: a call costs as much again)
    tid = hex(getrandbits(128) | _TOP)[3:]
    return tid, tid.encode()


def new_trace_id() -> str:
    return hex(getrandbits(128) | _TOP)[3:]


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
