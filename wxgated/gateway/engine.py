"""The one request engine: a route's filters by phase around its terminal.

Every request of every route runs here (the model is Envoy's decodeHeaders/encodeHeaders
and Kong's access/header_filter/log phases):

1. **request**: each filter in order, `request(req)` → None (go on), a Response (answer
   now: the filters before it see that answer) or a coroutine of either. Raising
   HTTPError refuses the request with the envelope.
2. the **terminal** starts (`start(req, flow)`) and answers through `flow.respond(resp)`
   or `flow.fail(exc)`, now or later;
3. **response**: the filters that passed phase 1, innermost first, `response(req, resp)`
   → None (edited in place), another Response, or a coroutine of either;
4. the answer goes to the connection's sink; once it is written, **done**: the same
   filters' `done(req, status)` (release what phase 1 took).

The engine runs synchronously from the parser's callback until something truly has to
wait. A coroutine a phase returns is driven by hand: its first step at
once, and when it finishes without waiting (memory state, a cached value) nothing was
scheduled at all; when it waits on a future, its next step runs from that future's
callback (`_Driver`), as a task's would, but with no task to create and wake. So a route
costs what its filters cost, and a filter has one form, `async` where it may wait.
(CPython 3.12's eager tasks come close; 3.11 has none.) A phase therefore runs outside
any task: it must not need `asyncio.current_task()` (`asyncio.timeout` does;
`asyncio.wait_for` does not), or must put such work in a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from wxgated.gateway.envelope import envelope, error_response
from wxgated.http.message import Handler, HTTPError, Request, Response

log = logging.getLogger("wxgated")
CLIENT_GONE = 499
Sink = Callable[[Request, Response], None]


class Pipeline:
    """One route's compiled filters and terminal. Each phase is a tuple of the filters
    that have it, as (position, bound method): a route pays nothing for a phase none of
    its filters has."""

    __slots__ = ("count", "requests", "responses", "dones", "terminal", "max_body")

    def __init__(self, filters: Sequence[Any], terminal: Any,
                 max_body: int | None = None) -> None:
        self.count = len(filters)
        self.requests = _steps(filters, "request")
        self.responses = _steps(filters, "response")[::-1]  # innermost first
        self.dones = _steps(filters, "done")
        self.terminal = terminal if hasattr(terminal, "start") else CoroutineTerminal(terminal)
        self.max_body = max_body

    def run(self, req: Request, sink: Sink) -> None:
        """Answer `req` through `sink(req, resp)`, now or later."""
        flow = Flow(req, self, sink)
        if self.max_body is not None:
            try:
                req.body.cap(self.max_body)
            except HTTPError as err:
                flow.fail(err)
                return
        flow.run_requests(self.requests)


def _steps(filters: Sequence[Any], name: str) -> tuple[tuple[int, Any], ...]:
    return tuple((i, getattr(f, name)) for i, f in enumerate(filters)
                 if getattr(f, name, None) is not None)


class CoroutineTerminal:
    """A terminal written as `async (req) -> Response` (aggregate, wechat): its
    coroutine runs in a task of its own, as it may use `asyncio.timeout`."""

    __slots__ = ("handler",)

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def start(self, req: Request, flow: Flow) -> None:
        flow.wait(self.handler(req))


class Flow:
    """One request through its route's pipeline."""

    __slots__ = ("req", "pipe", "sink", "step", "below", "resp")

    def __init__(self, req: Request, pipe: Pipeline, sink: Sink) -> None:
        self.req = req
        self.pipe = pipe
        self.sink = sink
        self.step = 0  # the filters before this position passed the request phase
        if pipe.dones:  # whoever writes the answer calls `done` (gateway.dispatch)
            req.flow = self

    # -- phase 1 and the terminal ---------------------------------------------------
    def run_requests(self, steps: tuple[tuple[int, Any], ...]) -> None:
        """The request phases of `steps`, then the terminal."""
        req = self.req
        for i, phase in steps:
            try:
                result = phase(req)
                if result is not None and type(result) is not Response:
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
            step = self.step
            self.run_requests(tuple(s for s in self.pipe.requests if s[0] > step))

    # -- answers --------------------------------------------------------------------
    def respond(self, resp: Response) -> None:
        """The answer to `req`, through the response phases of the filters that passed."""
        if self.pipe.responses:
            self._response(resp, self.step)
        else:
            self._answer(resp)

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

    def drive(self, work: Coroutine[Any, Any, Response]) -> None:
        """A terminal's answer from a coroutine that awaits only futures (no
        `asyncio.timeout`, nothing that needs a current task): it runs to its first wait
        now, and on from the callbacks of the futures it waits on. No task to create,
        register and wake, as `wait` has."""
        try:
            resp = self._drive(work, self._terminated)
        except BaseException as exc:
            self.fail(exc)
            return
        if resp is not _WAITING:
            self.respond(resp)

    def _terminated(self, result: Any, exc: BaseException | None) -> None:
        if exc is not None:
            self.fail(exc)
        else:
            self.respond(result)

    async def _waited(self, work: Awaitable[Response]) -> None:
        try:
            resp = await work
        except BaseException as exc:
            self.fail(exc)
        else:
            self.respond(resp)

    def _response(self, resp: Response, below: int) -> None:
        """The response phases of the filters before position `below`."""
        req = self.req
        for i, phase in self.pipe.responses:
            if i >= below:
                continue
            try:
                result = phase(req, resp)
                if result is not None and type(result) is not Response:
                    self.below, self.resp = i, resp
                    result = self._drive(result, self._responded)
                    if result is _WAITING:
                        return
            except BaseException as exc:
                result = self.error(exc)
            if result is not None:
                resp = result
        self._answer(resp)

    def _responded(self, result: Any, exc: BaseException | None) -> None:
        """A response phase that waited has ended."""
        resp = self.resp
        if exc is not None:
            resp = self.error(exc)
        elif result is not None:
            resp = result
        self._response(resp, self.below)

    def _answer(self, resp: Response) -> None:
        """To the sink, with the headers the request phases added for any answer."""
        req = self.req
        added = req.added
        if added is not None:
            resp.add_headers(added)
        self.sink(req, resp)

    def done(self, status: int) -> None:
        """After the answer is written (or abandoned): the done phases of the filters
        that passed the request phase (`req.flow` is set when there are any)."""
        req = self.req
        step = self.step
        for i, phase in self.pipe.dones:
            if i < step:
                try:
                    phase(req, status)
                except Exception:
                    log.exception("done phase failed (trace %s)", req.trace_id)

    # -- awaiting -------------------------------------------------------------------
    def _drive(self, coro: Coroutine[Any, Any, Any], then: Then) -> Any:
        """Run `coro` to its first wait: its result when it had none, else _WAITING,
        and `then(result, exc)` is called once it has ended."""
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value
        _Driver(coro, then).wait_on(yielded)
        return _WAITING


_WAITING = object()
Then = Callable[[Any, BaseException | None], None]


class _Driver:
    """Drives a coroutine that waits on futures without a task: each time the future
    it waits on is done, its next step runs from that future's callback, as a task's
    step would, until it returns. No task to create, start and wake per request: the
    common waits (a Redis reply) cost one callback each."""

    __slots__ = ("coro", "then")

    def __init__(self, coro: Coroutine[Any, Any, Any], then: Then) -> None:
        self.coro = coro
        self.then = then

    def wait_on(self, yielded: Any) -> None:
        if yielded is None:  # a bare yield (asyncio.sleep(0)): next turn of the loop
            asyncio.get_running_loop().call_soon(self.step, None)
        elif getattr(yielded, "_asyncio_future_blocking", False):
            yielded._asyncio_future_blocking = False
            yielded.add_done_callback(self.step)
        else:
            self.coro.close()
            self.then(None, RuntimeError(f"a phase yielded {yielded!r}, not a future"))

    def step(self, _: Any) -> None:
        try:
            yielded = self.coro.send(None)
        except StopIteration as stop:
            result, error = stop.value, None
        except BaseException as exc:
            result, error = None, exc
        else:
            self.wait_on(yielded)
            return
        self.then(result, error)


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
        flow = req.flow  # set when the pipeline has done phases
        if flow is not None:
            if resp.stream is None:
                flow.done(resp.status)
            else:  # done once the body is read, as a connection does once it is written
                resp.stream = _DoneStream(resp.stream, flow, resp.status)
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
