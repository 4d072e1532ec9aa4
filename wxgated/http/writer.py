"""Writing a Response to the client: one write for head + small body, framing for
streams, and flow control when the client reads slower than the upstream sends.

The head is built with one bytes join and sent together with the body in one
`transport.write` (docs/PERFORMANCE.md: half the per-request cost is system calls).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import orjson

from wxgated.http.flowcontrol import FlowControl
from wxgated.http.message import Request, Response
from wxgated.observe.trace import new_trace_id

JSON_TYPE = b"application/json; charset=utf-8"
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
# indexed by status: a tuple index is cheaper than a dict lookup on every response
_STATUS_LINES = tuple(
    b"HTTP/1.1 %d %s\r\n" % (code, _REASONS[code]) if code in _REASONS else None
    for code in range(600)
)
# set by the writer itself; a handler's values for these are replaced
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})


def status_line(status: int) -> bytes:
    line = _STATUS_LINES[status] if 0 <= status < 600 else None
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


def envelope_body(code: int, msg: str, data: Any = None, trace_id: str = "",
                  extra: dict[str, Any] | None = None) -> bytes:
    """The bytes of the gateway's JSON envelope (docs/CONFIG.md).

    orjson: json.dumps with these options took 14 µs for an aggregate's envelope (a
    JSONEncoder built per call, then the encoding), orjson 2 µs for the same bytes.
    What orjson refuses (an int past 64 bits, a lone surrogate) goes through the json
    module as before, so no value is written differently or lost."""
    doc: dict[str, Any] = {"code": code, "msg": msg, "data": data, "trace_id": trace_id}
    if extra:
        doc.update(extra)
    try:
        return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def simple_response(status: int, text: bytes, trace_id: str = "") -> bytes:
    """The whole envelope answer, closing the connection, for errors found before a
    Request exists (a refused parse, too many connections). It gets a trace id of its
    own, like every answer, so a client's report of it can be matched."""
    trace_id = trace_id or new_trace_id()
    body = envelope_body(status, text.decode("latin-1"), trace_id=trace_id)
    return (status_line(status) + b"content-type: " + JSON_TYPE + b"\r\ncontent-length: %d"
            % len(body) + b"\r\nx-trace-id: " + trace_id.encode()
            + b"\r\nconnection: close\r\n\r\n" + body)


def head_parts(req: Request, resp: Response,
               keep_alive: bool) -> tuple[list[bytes], bool, bool, bool]:
    """The head's parts, ending with the blank line; and keep-alive, head-only and
    chunked as decided for this response."""
    status = resp.status
    head_only = req.method == "HEAD" or status < 200 or status == 204 or status == 304
    length = None
    parts = [status_line(status)]  # each field's pieces: joined once, with the body
    if resp.no_framing is resp.headers:
        for h in resp.headers:
            parts += (h[0], b": ", h[1], b"\r\n")
    else:
        for h in resp.headers:
            name = h[0]
            if name not in _FRAMING:
                parts += (name, b": ", h[1], b"\r\n")
            elif name == b"content-length":
                # framing is the writer's: a handler's Content-Length only says how
                # long a stream (or the GET of a HEAD) is
                length = h[1]
    parts += (b"x-trace-id: ", req.trace_id.encode(), b"\r\n")
    stream = resp.stream
    chunked = False
    if status == 101:
        parts.append(b"connection: upgrade\r\n")
        keep_alive = True
    elif stream is None:
        if status >= 200 and status != 204 and status != 304:
            if not head_only:
                parts += (b"content-length: ", str(len(resp.body)).encode(), b"\r\n")
            elif length is not None:  # HEAD keeps the length the GET would have had
                parts.append(b"content-length: " + length + b"\r\n")
            elif resp.body:  # a gateway-made answer to HEAD: its GET's length
                parts.append(b"content-length: %d\r\n" % len(resp.body))
            # else a HEAD whose GET length is unknown (chunked): no length at all
    elif length is not None:
        parts.append(b"content-length: " + length + b"\r\n")
    elif not head_only:
        if req.version == "1.1":
            chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            keep_alive = False  # HTTP/1.0 without a length: the close ends the body
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    elif req.version == "1.0":
        parts.append(b"connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return parts, keep_alive, head_only, chunked


class ResponseWriter:
    __slots__ = ("transport", "flow", "bytes_out")

    def __init__(self, transport: Any, flow: FlowControl) -> None:
        self.transport = transport
        self.flow = flow
        self.bytes_out = 0

    async def write(self, req: Request, resp: Response, keep_alive: bool) -> bool:
        """Send `resp`; returns whether the connection may carry another request."""
        stream = resp.stream
        if stream is None:
            return self.write_now(req, resp, keep_alive)
        parts, keep_alive, head_only, chunked = head_parts(req, resp, keep_alive)
        head = b"".join(parts)
        self.bytes_out = len(head)
        if head_only:
            await _close_stream(stream)
            if not self.flow.lost:
                self.transport.write(head)
            return keep_alive
        return await self._write_stream(head, stream, chunked, keep_alive)

    def write_now(self, req: Request, resp: Response, keep_alive: bool) -> bool:
        """Send a response whose body is whole (`resp.stream` is None) in one write."""
        parts, keep_alive, head_only, _ = head_parts(req, resp, keep_alive)
        if not head_only:
            parts.append(resp.body)
        data = b"".join(parts)
        self.bytes_out = len(data)
        if not self.flow.lost:
            self.transport.write(data)
        return keep_alive

    async def _write_stream(self, head: bytes, stream: Any, chunked: bool,
                            keep_alive: bool) -> bool:
        transport = self.transport
        first = True
        try:
            async for chunk in stream:
                if self.flow.lost:
                    break
                if not chunk:
                    continue
                self.bytes_out += len(chunk)
                if chunked:
                    frame = [b"%x\r\n" % len(chunk), chunk, b"\r\n"]
                else:
                    frame = [chunk]
                if first:
                    frame.insert(0, head)
                    first = False
                transport.writelines(frame)
                if self.flow.write_paused:
                    await self.flow.drain()
        except Exception:
            # the source died mid-body: the client must see a broken response, never a
            # short one that looks complete
            await _close_stream(stream)
            if first and not self.flow.lost:
                transport.write(head)
            transport.abort()
            self.flow.lost = True
            return False
        if self.flow.lost:
            await _close_stream(stream)
            return False
        tail = b"0\r\n\r\n" if chunked else b""
        if first:
            transport.write(head + tail)
        elif tail:
            transport.write(tail)
        return keep_alive


async def _close_stream(stream: Any) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # noqa: BLE001 - a failing source must not break the writer
            pass
