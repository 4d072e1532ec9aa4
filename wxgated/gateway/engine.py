"""The one request engine: a route's filters by phase around its terminal.

Every request of every route runs here (the model is Envoy's decodeHeaders/encodeHeaders
and Kong's access/header_filter/log phases):

1. **request**: each filter in order, `request(req)` → None (go on), a Response (answer
   now: the filters before it see that answer) or an awaitable of either. Raising
   HTTPError refuses the request with the envelope.
2. the **terminal** starts (`start(req, flow)`) and answers through `flow.respond(resp)`
   or `flow.fail(exc)`, now or later;
3. **response**: the filters that passed phase 1, innermost first, `response(req, resp)`
   → None (edited in place), another Response, or an awaitable of either;
4. the answer goes to the connection's sink; once it is written, **done**: the same
   filters' `done(req, status)` (release what phase 1 took).

The engine runs synchronously from the parser's callback until something truly has to
wait. An awaitable a filter returns is a coroutine, driven one step by hand first: when
it finishes without waiting (memory state, a cached value) nothing was scheduled; only
when it waits on a future does the rest go to a task. So a route costs what its
filters cost, not a task per request, and a filter has one form, `async` where it may
wait. (CPython 3.12's eager tasks do the same; 3.11 has none.) Code a request or
response phase awaits must not need `asyncio.current_task()` before its first wait
(`asyncio.timeout` does): until then it runs outside any task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any

from wxgated.gateway.envelope import envelope, error_response
from wxgated.http.message import Handler, HTTPError, Request, Response

log = logging.getLogger("wxgated")
CLIENT_GONE = 499
Sink = Callable[[Request, Response], None]


class Pipeline:
    """One route's compiled filters and terminal. Each phase tuple holds the filters'
    bound phase methods by position, None where a filter has no such phase."""

    __slots__ = ("count", "requests", "responses", "dones", "terminal", "max_body")

    def __init__(self, filters: Sequence[Any], terminal: Any,
                 max_body: int | None = None) -> None:
        self.count = len(filters)
        self.requests = _phase(filters, "request")
        self.responses = _phase(filters, "response")
        self.dones = _phase(filters, "done")
        self.terminal = terminal if hasattr(terminal, "start") else CoroutineTerminal(terminal)
        self.max_body = max_body

    def run(self, req: Request, sink: Sink) -> None:
        """Answer `req` through `sink(req, resp)`, now or later."""
        Flow(req, self, sink).start()


def _phase(filters: Sequence[Any], name: str) -> tuple[Any, ...]:
    """The filters' phase `name` by position (None where a filter has none); empty
    when no filter has one, so a route pays nothing for a phase nobody uses."""
    found = tuple(getattr(f, name, None) for f in filters)
    return found if any(p is not None for p in found) else ()


class CoroutineTerminal:
    """A terminal written as `async (req) -> Response` (aggregate, respond, wechat): its
    coroutine runs in a task of its own, as it may use `asyncio.timeout`."""

    __slots__ = ("handler",)

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def start(self, req: Request, flow: Flow) -> None:
        flow.wait(self.handler(req))


class Flow:
    """One request through its route's pipeline."""

    __slots__ = ("req", "pipe", "sink", "step", "resp")

    def __init__(self, req: Request, pipe: Pipeline, sink: Sink) -> None:
        self.req = req
        self.pipe = pipe
        self.sink = sink
        self.step = 0  # filters before this one passed the request phase
        self.resp: Response | None = None
        req.flow = self

    def start(self) -> None:
        limit = self.pipe.max_body
        if limit is not None:
            try:
                self.req.body.cap(limit)
            except HTTPError as err:
                self.fail(err)
                return
        self._request(0)

    # -- phase 1 and the terminal ---------------------------------------------------
    def _request(self, i: int) -> None:
        req = self.req
        phases = self.pipe.requests
        n = len(phases)
        while i < n:
            phase = phases[i]
            if phase is not None:
                try:
                    result = phase(req)
                    if result is not None and result.__class__ is not Response:
                        self.step = i
                        result = self._drive(result, self._requested)
                        if result is _WAITING:
                            return
                except BaseException as exc:
                    self.step = i
                    self.fail(exc)
                    return
                if result is not None:
                    self.step = i
                    self.respond(result)
                    return
            i += 1
        self.step = self.pipe.count
        try:
            self.pipe.terminal.start(req, self)
        except BaseException as exc:
            self.fail(exc)

    def _requested(self, result: Any, exc: BaseException | None) -> None:
        """A request phase that waited has ended."""
        if exc is not None:
            self.fail(exc)
        elif result is not None:
            self.respond(result)
        else:
            self._request(self.step + 1)

    # -- answers --------------------------------------------------------------------
    def respond(self, resp: Response) -> None:
        """The answer to `req`, through the response phases of the filters that passed."""
        self._response(resp, self.step)

    def fail(self, exc: BaseException) -> None:
        """What was raised, as the answer: the envelope of an HTTPError, 499 for a
        client gone mid-body, else a logged 500."""
        self.respond(self.error(exc))

    def error(self, exc: BaseException) -> Response:
        resp = self._error(exc)
        resp.error = exc
        return resp

    def _error(self, exc: BaseException) -> Response:
        req = self.req
        if isinstance(exc, HTTPError):
            req.reason = exc.reason
            return error_response(exc, req.trace_id)
        if isinstance(exc, ConnectionResetError):
            # the client went away mid-body: nginx's 499, counted and logged as such,
            # not an error of the route (the answer has nobody to go to)
            return Response(CLIENT_GONE)
        if isinstance(exc, asyncio.CancelledError):  # stopped at shutdown
            return envelope(503, None, trace_id=req.trace_id, code=503, msg="shutting down")
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        route = req.route
        log.error("route %s failed (trace %s)", route.name if route is not None else "-",
                  req.trace_id, exc_info=exc)
        req.reason = "internal_error"
        return envelope(500, None, trace_id=req.trace_id, code=500, msg="internal error")

    def wait(self, work: Awaitable[Response]) -> None:
        """A terminal's answer that takes a task (a new upstream connection, a retry,
        an aggregate)."""
        asyncio.get_running_loop().create_task(self._waited(work))

    async def _waited(self, work: Awaitable[Response]) -> None:
        try:
            resp = await work
        except BaseException as exc:
            self.fail(exc)
        else:
            self.respond(resp)

    def _response(self, resp: Response, i: int) -> None:
        req = self.req
        phases = self.pipe.responses
        if i > len(phases):
            i = len(phases)
        while i > 0:
            i -= 1
            phase = phases[i]
            if phase is None:
                continue
            try:
                result = phase(req, resp)
                if result is not None and result.__class__ is not Response:
                    self.step, self.resp = i, resp
                    result = self._drive(result, self._responded)
                    if result is _WAITING:
                        return
            except BaseException as exc:
                result = self.error(exc)
            if result is not None:
                resp = result
        added = req.added
        if added is not None:
            resp.add_headers(added)
        self.sink(req, resp)

    def _responded(self, result: Any, exc: BaseException | None) -> None:
        """A response phase that waited has ended."""
        resp = self.resp
        assert resp is not None
        self.resp = None
        if exc is not None:
            resp = self.error(exc)
        elif result is not None:
            resp = result
        self._response(resp, self.step)

    def done(self, status: int) -> None:
        """After the answer is written (or abandoned): the done phases of the filters
        that passed the request phase."""
        req = self.req
        for phase in self.pipe.dones[:self.step]:
            if phase is not None:
                try:
                    phase(req, status)
                except Exception:
                    log.exception("done phase failed (trace %s)", req.trace_id)

    # -- awaiting -------------------------------------------------------------------
    def _drive(self, coro: Coroutine[Any, Any, Any],
               then: Callable[[Any, BaseException | None], None]) -> Any:
        """Run `coro` to its first wait: its result when it had none, else _WAITING,
        and a task finishes it and calls `then(result, exc)`."""
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value
        asyncio.get_running_loop().create_task(_finish(coro, yielded, then))
        return _WAITING


_WAITING = object()


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any,
                  then: Callable[[Any, BaseException | None], None]) -> None:
    """Drive a coroutine whose first step already ran (and waited on `yielded`) to its
    end inside this task, as a task would have: the future's outcome is read by the
    coroutine itself; a cancel of this task is thrown into it."""
    try:
        while True:
            try:
                await _Blocked(yielded)
            except BaseException as exc:  # this task cancelled while waiting
                yielded = coro.throw(exc)
            else:
                yielded = coro.send(None)
    except StopIteration as stop:
        then(stop.value, None)
    except BaseException as exc:
        then(None, exc)


class _Blocked:
    """Await what a driven coroutine yielded without taking its result: a future (or
    None, a bare yield) the coroutine reads once it is resumed."""

    __slots__ = ("what",)

    def __init__(self, what: Any) -> None:
        self.what = what

    def __await__(self) -> Generator[Any, None, None]:
        what = self.what
        if what is None:
            yield None
        elif not what.done():
            what._asyncio_future_blocking = True
            yield what


def chain(filters: Sequence[Any], terminal: Any) -> Handler:
    """`filters` around `terminal` as one `async (req) -> Response`: the engine for a
    caller that has no connection (tests, a sub-request)."""
    pipe = Pipeline(filters, terminal)

    async def run(req: Request) -> Response:
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

        def sink(_: Request, resp: Response) -> None:
            if not fut.done():
                fut.set_result(resp)

        pipe.run(req, sink)
        resp = await fut
        if resp.stream is None:
            req.flow.done(resp.status)
        else:  # done once the body has been read, as a connection does once it is written
            resp.stream = _DoneStream(resp.stream, req.flow, resp.status)
        return resp

    return run


class _DoneStream:
    """A streamed body that ends its flow (`done`) exactly once: at its end, on an error,
    when closed or when dropped unread."""

    __slots__ = ("_stream", "_flow", "_status")

    def __init__(self, stream: AsyncIterator[bytes], flow: Flow, status: int) -> None:
        self._stream = stream
        self._flow: Flow | None = flow
        self._status = status

    def __aiter__(self) -> _DoneStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._stream.__anext__()
        except BaseException:  # the end (StopAsyncIteration), an error, or a cancel
            self._finish()
            raise

    async def aclose(self) -> None:
        self._finish()
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()

    def _finish(self) -> None:
        flow, self._flow = self._flow, None
        if flow is not None:
            flow.done(self._status)

    def __del__(self) -> None:
        self._finish()
