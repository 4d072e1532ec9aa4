"""Request and Response: the two objects every filter and handler sees.

They are plain slotted classes rather than dataclasses because one of each is built
per request on the hot path. Header names are lower-case bytes, values raw bytes:
that is what the parser hands us and what the writer sends, so nothing is decoded
unless a filter asks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

Headers = list[tuple[bytes, bytes]]


class Body:
    """A request body that arrives in chunks from the client connection.

    The server protocol feeds it; handlers either stream it (`async for`) or buffer it
    (`await read()`). Buffered bodies can be replayed, which retries and aggregation need.
    """

    __slots__ = ("length", "_feeder", "_buffered")

    def __init__(self, feeder: BodyFeeder | None, length: int | None) -> None:
        self.length = length  # Content-Length when known, else None (chunked)
        self._feeder = feeder
        self._buffered: bytes | None = None if feeder is not None else b""

    @classmethod
    def of(cls, data: bytes) -> Body:
        body = cls(None, len(data))
        body._buffered = data
        return body

    @property
    def empty(self) -> bool:
        return self.length == 0 or (self._feeder is None and not self._buffered)

    @property
    def buffered(self) -> bytes | None:
        """The whole body if it has been read with `read()`, else None."""
        return self._buffered

    def arrived(self) -> bytes | None:
        """The whole body when it had a Content-Length, all of it is already here and
        nothing has read it: the usual small POST, which can then go upstream with its
        head in one write (and be replayed by a retry). None otherwise; then stream it."""
        if self._buffered is not None:
            return self._buffered
        feeder = self._feeder
        if self.length is None or feeder is None:
            return None
        self._buffered = feeder.whole()
        return self._buffered

    async def fill(self) -> None:
        """Read the body ahead, before an upstream connection is taken: whole when it
        fits the server's `request_buffer` (then it is sent with a Content-Length, even
        if it came chunked, and a retry can replay it), else that much of it. A client
        dripping a small body so costs no upstream connection (nginx's
        proxy_request_buffering). Raises what ends the body early: the body deadline's
        408, a 413, the client leaving. Callers check `buffered is None` first, so a
        body already whole costs no coroutine."""
        feeder = self._feeder
        if feeder is None or self._buffered is not None or feeder.started:
            return
        await feeder.fill()
        data = feeder.whole()
        if data is not None:
            self._buffered = data
            self.length = len(data)

    @property
    def consumed(self) -> bool:
        """True once streaming has started, so the body cannot be sent again."""
        return self._feeder is not None and self._feeder.started and self._buffered is None

    def cap(self, limit: int) -> None:
        """Lower the size limit for this body (a route's own `max_body`)."""
        if self.length is not None and self.length > limit:
            raise HTTPError(413, "request body too large", reason="body_too_large")
        feeder = self._feeder
        if feeder is not None and hasattr(feeder, "limit"):
            if feeder.received > limit:  # already arrived (a small chunked body)
                raise HTTPError(413, "request body too large", reason="body_too_large")
            feeder.limit = min(feeder.limit, limit)

    async def read(self, limit: int | None = None) -> bytes:
        if self._buffered is not None:
            return self._buffered
        assert self._feeder is not None
        parts = []
        size = 0
        async for chunk in self._feeder.chunks():
            size += len(chunk)
            if limit is not None and size > limit:
                raise HTTPError(413, "request body too large", reason="body_too_large")
            parts.append(chunk)
        self._buffered = b"".join(parts)
        return self._buffered

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._buffered is not None:
            return _once(self._buffered)
        assert self._feeder is not None
        return self._feeder.chunks()


NO_BODY = Body(None, None)  # a request without framing headers: nothing to forward


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


class BodyFeeder(Protocol):
    """The interface the server protocol implements for a request's body
    (wxgated.http.body.RequestBody)."""

    started: bool
    received: int
    limit: int

    def chunks(self) -> AsyncIterator[bytes]: ...

    def whole(self) -> bytes | None:
        """All of the body if it has arrived and nothing has read it, else None."""

    async def fill(self) -> None:
        """Wait until the body is all in or has filled the read-ahead buffer."""


class Request:
    __slots__ = (
        "method", "path", "query", "headers", "version", "keep_alive", "scheme",
        "client_ip", "peer_ip", "trace_id", "params", "route", "claims", "body",
        "ctx", "start", "upstream", "target", "upstream_ms", "host", "transport",
        "orig_path", "trace_hex", "plain_target", "reason", "flow", "added",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: Headers,
        body: Body,
        version: str = "1.1",
        keep_alive: bool = True,
        scheme: str = "http",
        client_ip: str = "",
        peer_ip: str = "",
        trace_id: str = "",
        start: float = 0.0,
    ) -> None:
        self.method = method
        self.path = path  # normalised path (http.target), still percent-encoded; filters may rewrite it
        self.orig_path = path  # as the client sent it, for logs
        self.query = query  # raw query string without "?"
        self.headers = headers
        self.body = body
        self.version = version
        self.keep_alive = keep_alive
        self.scheme = scheme
        self.client_ip = client_ip  # after trusted_proxies
        self.peer_ip = peer_ip  # the TCP peer
        self.trace_id = trace_id
        self.trace_hex = b""  # the W3C form of trace_id when known (observe.trace)
        # (path, query, target as sent) when the client's target needed no normalising:
        # while path and query are still those objects, it is the upstream's target too
        self.plain_target: tuple[str, str, bytes] | None = None
        self.start = start
        self.host = ""
        self.params: dict[str, str] = {}
        self.route: Any = None  # the compiled Route, set by the server after matching
        self.claims: dict[str, Any] | None = None  # set by jwt_auth
        self.ctx: dict[Any, Any] = {}  # scratch space for filters (a filter may key by itself)
        self.upstream = ""  # for the access log
        self.target = ""
        self.upstream_ms = -1.0
        self.transport: Any = None  # the client transport, for protocol upgrades
        self.reason = ""  # why the gateway refused it, for the access log (HTTPError.reason)
        self.flow: Any = None  # its run through the engine (wxgated.gateway.engine)
        self.added: Headers | None = None  # headers the filters put on whatever answers it

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header; `name` must be lower-case."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_str(self, name: bytes, default: str = "") -> str:
        v = self.header(name)
        return default if v is None else v.decode("latin-1")

    def set_header(self, name: bytes, value: bytes) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    def remove_header(self, name: bytes) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name]

    def add_response_headers(self, headers: Headers) -> None:
        """Headers for the answer, whatever it is (an error too): a filter's request
        phase adds them (RateLimit-*, Deprecation, CORS) and the engine puts them on the
        answer after the response phases, an inner filter's before an outer one's. The
        names must not be framing ones."""
        added = self.added
        self.added = headers if added is None else headers + added


class Response:
    """What a handler returns. `body` is sent as is; `stream`, when set, is sent as it
    arrives (with Content-Length if the headers carry one, else chunked).

    `upgrade`, when set on a 101 response, is called with the client transport and
    protocol once the head is written; it owns the connection from then on.
    """

    __slots__ = ("status", "headers", "body", "stream", "upgrade", "no_framing", "error")

    def __init__(
        self,
        status: int = 200,
        headers: Headers | None = None,
        body: bytes = b"",
        stream: AsyncIterator[bytes] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body
        self.stream = stream
        self.upgrade: Callable[[Any, Any], Any] | None = None
        # set to `headers` by whoever made that list without framing fields (a proxied
        # answer): while it is still the list, the writer adds its own framing without
        # looking through it first (a filter that replaces the list loses this)
        self.no_framing: Headers | None = None
        # what the gateway's answer is the envelope of (a refusal, a failure): filters
        # that treat the upstream's answers (envelope, cache) leave such answers alone
        self.error: BaseException | None = None

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def add_headers(self, headers: Headers) -> None:
        """Append non-framing `headers` (a new list: the old one may be shared)."""
        merged = self.headers + headers
        if self.no_framing is self.headers:
            self.no_framing = merged
        self.headers = merged

    def set_header(self, name: bytes, value: bytes) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    def remove_header(self, name: bytes) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name]

    async def read_body(self, limit: int | None = None) -> bytes:
        """Buffer a streamed body (for filters that need it whole)."""
        if self.stream is None:
            return self.body
        parts = []
        size = 0
        try:
            async for chunk in self.stream:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise HTTPError(502, "upstream response too large")
                parts.append(chunk)
        finally:
            close = getattr(self.stream, "aclose", None)
            if close is not None:
                await close()
        self.stream = None
        self.body = b"".join(parts)
        self.remove_header(b"transfer-encoding")
        self.set_header(b"content-length", str(len(self.body)).encode())
        return self.body


Handler = Callable[[Request], Awaitable[Response]]


class HTTPError(Exception):
    """Raised anywhere in a chain to answer with the gateway envelope.

    `reason` is the access log's word for a refusal ("token_expired", "rate_limited"):
    one of a fixed snake_case vocabulary (docs/OPERATIONS.md), never text from the
    request, so log queries can count by it and nothing the client sent reaches it."""

    def __init__(
        self,
        status: int,
        msg: str,
        *,
        code: int | None = None,
        headers: Headers | None = None,
        data: Any = None,
        reason: str = "",
    ) -> None:
        super().__init__(msg)
        self.reason = reason
        self.status = status
        self.msg = msg
        self.code = status if code is None else code
        self.headers = headers or []
        self.data = data
