"""Trace ids: take the caller's, else the W3C traceparent's, else make one (docs/CONFIG.md)."""

from __future__ import annotations

from random import getrandbits

_MAX_LEN = 128


def trace_id_for(x_trace_id: bytes | None, traceparent: bytes | None) -> str:
    if x_trace_id:
        tid = x_trace_id.decode("latin-1").strip()
        if 0 < len(tid) <= _MAX_LEN and tid.isprintable() and '"' not in tid and "\\" not in tid:
            return tid
    if traceparent:
        parts = traceparent.split(b"-")
        if len(parts) >= 4 and len(parts[1]) == 32 and parts[1] != b"0" * 32:
            try:
                int(parts[1], 16)
                return parts[1].decode().lower()
            except ValueError:
                pass
    # unique, not secret; %-formatting takes half the time of a format spec here (and
    # inline: a call to new_trace_id would cost as much again, on every request)
    return "%032x" % getrandbits(128)  # noqa: UP031


def new_trace_id() -> str:
    return "%032x" % getrandbits(128)  # noqa: UP031
