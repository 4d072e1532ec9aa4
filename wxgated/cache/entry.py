"""A cached response and its compact binary form.

The same bytes go to Redis (shared between workers and machines) and are small to
parse: a fixed head, length-prefixed headers, then the body as is. Times are wall-clock
(`time.time()`) because entries cross process boundaries.

`trace` is set when the body is a gateway envelope (aggregate, envelope filter): it is
the JSON string of the trace id the body was made under, so a HIT can put the current
request's trace id in its place instead of replaying someone else's.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from wxgated.http.message import Headers

_MAGIC = b"WXC2"
# status, stored_at, fresh_until, stale_until, n headers, trace length
_HEAD = struct.Struct("!HdddHH")
_HDR = struct.Struct("!HI")  # name length, value length
_OVERHEAD = 160  # rough per-entry bookkeeping cost, so tiny entries still count
_TRACE_KEY = b'"trace_id":'


@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    headers: Headers
    body: bytes
    stored_at: float  # when the upstream made it (now - its Age), for our Age header
    fresh_until: float  # served as HIT until then
    stale_until: float  # kept until then for stale-if-error (== fresh_until without it)
    trace: bytes = b""  # '"trace_id":"<id>"' as found in the body (an envelope), else b""

    @property
    def size(self) -> int:
        return _OVERHEAD + len(self.body) + sum(len(k) + len(v) + 16 for k, v in self.headers)

    def body_for(self, trace_id: str) -> bytes:
        """The body with the current trace id where the stored one was."""
        if not self.trace:
            return self.body
        sep = b" " if self.trace[len(_TRACE_KEY):len(_TRACE_KEY) + 1] == b" " else b""
        new = _TRACE_KEY + sep + json.dumps(trace_id, ensure_ascii=False).encode()
        return self.body.replace(self.trace, new)


def trace_fragment(body: bytes, trace_id: str) -> bytes:
    """What `Entry.trace` should be for `body` made under `trace_id`."""
    if not trace_id or _TRACE_KEY not in body:
        return b""
    value = json.dumps(trace_id, ensure_ascii=False).encode()
    for frag in (_TRACE_KEY + value, _TRACE_KEY + b" " + value):
        if frag in body:
            return frag
    return b""


def dumps(entry: Entry) -> bytes:
    parts = [
        _MAGIC,
        _HEAD.pack(entry.status, entry.stored_at, entry.fresh_until, entry.stale_until,
                   len(entry.headers), len(entry.trace)),
        entry.trace,
    ]
    for k, v in entry.headers:
        parts.append(_HDR.pack(len(k), len(v)))
        parts.append(k)
        parts.append(v)
    parts.append(entry.body)
    return b"".join(parts)


def loads(data: bytes) -> Entry | None:
    """The entry, or None for bytes that are not one (old format, corruption)."""
    if not data.startswith(_MAGIC):
        return None
    try:
        status, stored_at, fresh_until, stale_until, n, tl = _HEAD.unpack_from(data, 4)
        pos = 4 + _HEAD.size
        trace = data[pos:pos + tl]
        pos += tl
        headers: Headers = []
        for _ in range(n):
            kl, vl = _HDR.unpack_from(data, pos)
            pos += _HDR.size
            k = data[pos:pos + kl]
            v = data[pos + kl:pos + kl + vl]
            if len(v) != vl:
                return None
            headers.append((k, v))
            pos += kl + vl
    except struct.error:
        return None
    return Entry(status, headers, data[pos:], stored_at, fresh_until, stale_until, trace)
