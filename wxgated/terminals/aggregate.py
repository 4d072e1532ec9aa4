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
from typing import Any

from wxgated.aggregate.plan import Plan, PlanError, Step, compile_plan
from wxgated.aggregate.template import MissingValue, claim_value, render
from wxgated.config.errors import SemanticError
from wxgated.config.units import DURATION_PATTERN
from wxgated.gateway.envelope import envelope
from wxgated.http.errors import UpstreamError, UpstreamTimeout
from wxgated.http.headers import traceparent
from wxgated.http.message import Handler, Headers, Request, Response
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


async def _call(step: Step, req: Request, answers: dict[str, Any], base: Headers,
                deadline: float) -> Any:
    """One backend call; returns the shaped answer or raises Failed."""
    try:
        target = render(step.path, req, answers)
        headers = base + [(k, render(t, req, answers).encode("utf-8", "surrogateescape"))
                          for k, t in step.headers]
    except MissingValue as e:
        raise Failed(e.status, str(e)) from None
    loop = asyncio.get_running_loop()
    timeout = min(step.timeout, deadline - loop.time())
    if timeout <= 0:
        raise Failed(504, "no time left")
    try:
        async with asyncio.timeout(timeout):
            status, _, body = await step.upstream.fetch(step.method, target, headers, b"",
                                                        timeout)
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


async def _run(step: Step, req: Request, tasks: dict[str, asyncio.Task[Any]],
               answers: dict[str, Any], base: Headers, deadline: float) -> Any:
    for dep in step.after:
        try:
            await asyncio.shield(tasks[dep])
        except Failed:
            raise Failed(502, f"needs {dep}, which failed") from None
    value = await _call(step, req, answers, base, deadline)
    answers[step.name] = value
    return value


def _failure(step: Step, err: Failed, req: Request) -> Response:
    return envelope(err.status, None, trace_id=req.trace_id, code=err.status,
                    msg=f"backend {step.name}: {err.reason}",
                    headers=[(COMPLETED, b"false")], extra={"failed": [step.name]})


async def run_plan(plan: Plan, req: Request) -> Response:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + plan.timeout
    answers: dict[str, Any] = {}
    base = _base_headers(req)
    tasks: dict[str, asyncio.Task[Any]] = {}
    for s in plan.steps:
        task = tasks[s.name] = loop.create_task(_run(s, req, tasks, answers, base, deadline))
        task.add_done_callback(_retrieve)
    by_task = {t: s for s, t in zip(plan.steps, tasks.values(), strict=True)}
    pending = set(tasks.values())
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                step = by_task[t]
                err = t.exception()
                if err is not None and not step.optional:
                    if not isinstance(err, Failed):
                        raise err
                    return _failure(step, err, req)
    finally:
        for t in pending:
            t.cancel()
    return _merge(plan, tasks, req)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a failure as seen: after an early answer nobody else looks at it."""
    if not task.cancelled():
        task.exception()


def _merge(plan: Plan, tasks: dict[str, asyncio.Task[Any]], req: Request) -> Response:
    data: dict[str, Any] = {}
    partial: list[str] = []
    for step in plan.steps:
        task = tasks[step.name]
        err = task.exception()
        if err is not None:
            if not isinstance(err, Failed):
                raise err
            partial.append(step.name)
            if step.into is not None and step.include:
                data[step.into] = None
            continue
        if not step.include:
            continue
        if step.into is None:
            data.update(task.result())
        else:
            data[step.into] = task.result()
    if partial:
        return envelope(plan.status_on_partial, data, trace_id=req.trace_id, msg="partial",
                        headers=[(COMPLETED, b"false")], extra={"partial": partial})
    return envelope(200, data, trace_id=req.trace_id, headers=[(COMPLETED, b"true")])


def build(value: dict[str, Any], route: dict[str, Any], ctx: Any) -> Handler:
    try:
        plan = compile_plan(value, route, ctx)
    except PlanError as e:
        raise SemanticError(str(e), path=e.path) from None

    async def aggregate(req: Request) -> Response:
        return await run_plan(plan, req)

    return aggregate


register_terminal(Terminal("aggregate", SCHEMA, build))
