"""The `aggregate` terminal: one answer built from several backends (docs/CONFIG.md).

Steps run concurrently, each as soon as the steps it depends on have answered, so a
page of independent backends costs about the slowest of them. Every step is bounded by
its own `timeout` and by what is left of the route's overall `timeout`. Calls go through
the upstream's pool (`Upstream.fetch`): same connections, breakers, retries and metrics
as proxied traffic.

Failures are never silent:
- a required step that fails ends the request at once (the others are cancelled) with a
  502 envelope, 504 when it timed out, naming the step in `msg` and in `"failed"`;
  a placeholder the request cannot fill is the client's fault: 400 (401 for a claim);
- an optional step that fails (and any step needing it) is listed in `"partial"`,
  its `as` key is null, and `X-Wxgated-Completed: false` is set; the status is
  `status_on_partial` (default 200) and `msg` is "partial".
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

from wxgated.aggregate.plan import Plan, PlanError, Step, compile_plan
from wxgated.aggregate.template import MissingValue, claim_value, render
from wxgated.config.errors import SemanticError
from wxgated.config.units import DURATION_PATTERN
from wxgated.gateway.envelope import envelope
from wxgated.http.errors import UpstreamError, UpstreamTimeout
from wxgated.http.headers import traceparent
from wxgated.http.message import Headers, Request, Response
from wxgated.terminals.base import Terminal, register_terminal

_DURATION = {"type": ["string", "number"], "pattern": DURATION_PATTERN}
_PATHS = {"type": "array", "items": {"type": "string", "minLength": 1}}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["backends"],
    "properties": {
        "timeout": {**_DURATION, "default": "10s"},
        "status_on_partial": {"type": "integer", "minimum": 200, "maximum": 599,
                              "default": 200},
        "backends": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["upstream", "path"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "upstream": {"type": "string"},
                "method": {"enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                           "default": "GET"},
                "path": {"type": "string", "minLength": 1},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "as": {"type": "string", "minLength": 1},
                "include": {"type": "boolean", "default": True},
                "optional": {"type": "boolean", "default": False},
                "timeout": _DURATION,
                "after": {"oneOf": [{"type": "string"}, _PATHS]},
                "unwrap": {"type": "string", "minLength": 1},
                "allow": _PATHS,
                "deny": _PATHS,
                "rename": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }},
    },
}

COMPLETED = b"x-wxgated-completed"


class Failed(Exception):
    """One step's failure: the status it maps to and why, for the envelope."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _base_headers(req: Request) -> Headers:
    """What every backend call carries: trace and identity (docs/CONFIG.md)."""
    tid = req.trace_id
    headers: Headers = [
        (b"accept", b"application/json"),
        (b"x-trace-id", tid.encode()),
        (b"traceparent", traceparent(tid)),
    ]
    if req.client_ip:
        headers.append((b"x-forwarded-for", req.client_ip.encode()))
    claims = req.claims
    if claims:
        for claim, name in (("openid", b"x-wx-openid"), ("unionid", b"x-wx-unionid")):
            v = claim_value(claims, claim)
            if v:
                headers.append((name, str(v).encode()))
    return headers


class _Run:
    """One request's plan in flight: a task per step, one timer for the route's
    timeout, and `settled`, done when every step has ended or a required one failed.

    One future and one timer per request, where asyncio.wait made a waiter and a
    callback per pending step each round and every step entered a timeout context of
    its own (together ≈ 10% of an aggregate request's CPU). A step whose own timeout
    is shorter than the route's still keeps its own timer (`_call`)."""

    def __init__(self, plan: Plan, req: Request) -> None:
        self.loop = loop = asyncio.get_running_loop()
        self.deadline = loop.time() + plan.timeout
        self.plan = plan
        self.req = req
        self.base = _base_headers(req)
        self.settled: asyncio.Future[tuple[Step, Failed] | None] = loop.create_future()
        self.answers: dict[str, Any] = {}
        self.failed: set[str] = set()
        self.left = len(plan.steps)
        self.expired = False
        self.tasks: dict[str, asyncio.Task[None]] = {}
        for s in plan.steps:
            task = self.tasks[s.name] = loop.create_task(self._step(s))
            task.add_done_callback(partial(self._ended, s))
        self.timer = loop.call_at(self.deadline, self._expire)

    async def _step(self, step: Step) -> None:
        for dep in step.after:
            try:
                await asyncio.shield(self.tasks[dep])
            except Failed:
                raise Failed(502, f"needs {dep}, which failed") from None
        self.answers[step.name] = await self._call(step)

    async def _call(self, step: Step) -> Any:
        """One backend call; returns the shaped answer or raises Failed. A step whose own
        timeout is shorter than the route's bounds the call itself; the route's deadline
        is the plan's one timer."""
        req, answers = self.req, self.answers
        try:
            target = render(step.path, req, answers)
            headers = self.base + [(k, render(t, req, answers).encode("utf-8", "surrogateescape"))
                                   for k, t in step.headers]
        except MissingValue as e:
            raise Failed(e.status, str(e)) from None
        timeout = min(step.timeout, self.deadline - self.loop.time())
        if timeout <= 0:
            raise Failed(504, "no time left")
        fetch = step.upstream.fetch(step.method, target, headers, b"", timeout)
        try:
            if step.timeout < self.plan.timeout:
                async with asyncio.timeout(timeout):
                    status, _, body = await fetch
            else:
                status, _, body = await fetch
        except (TimeoutError, UpstreamTimeout):
            raise Failed(504, f"timed out after {timeout:g}s") from None
        except UpstreamError as e:
            raise Failed(502, f"{e.reason}: {e}") from None
        except OSError as e:
            raise Failed(502, f"connection error: {e}") from None
        if not 200 <= status < 300:
            raise Failed(502, f"answered HTTP {status}")
        try:
            value = json.loads(body) if body else None
        except ValueError:
            raise Failed(502, "answered invalid JSON") from None
        value = step.shape.apply(value)
        if step.into is None and step.include and not isinstance(value, dict):
            raise Failed(502, "answer is not a JSON object, cannot merge it into data")
        return value

    def _ended(self, step: Step, task: asyncio.Task[None]) -> None:
        self.left -= 1
        if not task.cancelled():
            err = task.exception()  # also marks it seen when nobody else looks
        elif self.expired:
            err = Failed(504, f"timed out after {self.plan.timeout:g}s")
        else:  # not by us: the loop is shutting down
            err = asyncio.CancelledError()
        if self.settled.done():
            return
        if err is not None:
            if not isinstance(err, Failed):
                self.settled.set_exception(err)
                return
            self.failed.add(step.name)
            if not step.optional:
                self.settled.set_result((step, err))
                return
        if self.left == 0:
            self.settled.set_result(None)

    def _expire(self) -> None:
        self.expired = True
        self._cancel()

    def _cancel(self) -> None:
        for t in self.tasks.values():
            t.cancel()

    def stop(self) -> None:
        self.timer.cancel()
        self._cancel()


def _failure(step: Step, err: Failed, req: Request) -> Response:
    return envelope(err.status, None, trace_id=req.trace_id, code=err.status,
                    msg=f"backend {step.name}: {err.reason}",
                    headers=[(COMPLETED, b"false")], extra={"failed": [step.name]})


async def run_plan(plan: Plan, req: Request) -> Response:
    """The plan's answer. Awaits only its own future (the steps' timers live in their
    tasks), so the engine drives it without a task of its own (`Aggregate.start`)."""
    run = _Run(plan, req)
    try:
        failed = await run.settled
    finally:
        run.stop()
    if failed is not None:
        return _failure(*failed, req)
    return _merge(run, req)


def _merge(run: _Run, req: Request) -> Response:
    data: dict[str, Any] = {}
    partial_steps: list[str] = []
    answers = run.answers
    for step in run.plan.steps:
        if step.name in run.failed:
            partial_steps.append(step.name)
            if step.into is not None and step.include:
                data[step.into] = None
        elif not step.include:
            continue
        elif step.into is None:
            data.update(answers[step.name])
        else:
            data[step.into] = answers[step.name]
    if partial_steps:
        return envelope(run.plan.status_on_partial, data, trace_id=req.trace_id,
                        msg="partial", headers=[(COMPLETED, b"false")],
                        extra={"partial": partial_steps})
    return envelope(200, data, trace_id=req.trace_id, headers=[(COMPLETED, b"true")])


class Aggregate:
    """The route's terminal: answers through the engine's flow (`start`), or awaited
    as `async (req) -> Response` by a caller without one."""

    __slots__ = ("plan",)

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def start(self, req: Request, flow: Any) -> None:
        flow.drive(run_plan(self.plan, req))

    async def __call__(self, req: Request) -> Response:
        return await run_plan(self.plan, req)


def build(value: dict[str, Any], route: dict[str, Any], ctx: Any) -> Aggregate:
    try:
        plan = compile_plan(value, route, ctx)
    except PlanError as e:
        raise SemanticError(str(e), path=e.path) from None
    return Aggregate(plan)


register_terminal(Terminal("aggregate", SCHEMA, build))
