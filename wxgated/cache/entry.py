"""A cached response and its compact binary form.

The same bytes go to Redis (shared between workers and machines) and are small to
parse: a fixed head, length-prefixed headers, then the body as is. Times are wall-clock
(`time.time()`) because entries cross process boundaries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from wxgated.http.message import Headers

_MAGIC = b"WXC1"
_HEAD = struct.Struct("!HdddH")  # status, stored_at, fresh_until, stale_until, n headers
_HDR = struct.Struct("!HI")  # name length, value length
_OVERHEAD = 160  # rough per-entry bookkeeping cost, so tiny entries still count


@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    headers: Headers
    body: bytes
    stored_at: float  # when the upstream made it (now - its Age), for our Age header
    fresh_until: float  # served as HIT until then
    stale_until: float  # kept until then for stale-if-error (== fresh_until without it)

    @property
    def size(self) -> int:
        return _OVERHEAD + len(self.body) + sum(len(k) + len(v) + 16 for k, v in self.headers)


def dumps(entry: Entry) -> bytes:
    parts = [
        _MAGIC,
        _HEAD.pack(entry.status, entry.stored_at, entry.fresh_until, entry.stale_until,
                   len(entry.headers)),
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
        status, stored_at, fresh_until, stale_until, n = _HEAD.unpack_from(data, 4)
        pos = 4 + _HEAD.size
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
    return Entry(status, headers, data[pos:], stored_at, fresh_until, stale_until)
