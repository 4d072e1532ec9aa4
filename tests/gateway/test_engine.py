"""The engine's contract, through `chain` (the engine without a connection): phase order,
who sees which answer, done once, and a wait that costs no task."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from wxgated.gateway.engine import Pipeline, chain
from wxgated.http.message import Body, HTTPError, Request, Response
from wxgated.state.memory import MemoryState


def request() -> Request:
    return Request("GET", "/x", "", [], Body.of(b""), client_ip="10.0.0.1", trace_id="t")


class Recorder:
    """A filter that records its phases in a shared log; `answer`/`refuse` in its request
    phase, `wait_on` a future there (as a Redis reply would be)."""

    def __init__(self, name: str, log: list[str], *, answer: bool = False,
                 refuse: bool = False, wait_on: asyncio.Future[None] | None = None) -> None:
        self.name, self.log = name, log
        self.answer, self.refuse, self.wait_on = answer, refuse, wait_on

    def request(self, req: Request) -> Any:
        self.log.append(f"{self.name}.request")
        if self.refuse:
            raise HTTPError(429, "slow down", headers=[(b"retry-after", b"1")],
                            reason="rate_limited")
        if self.answer:
            return Response(200, [], b"from " + self.name.encode())
        req.add_response_headers([(b"x-" + self.name.encode(), b"1")])
        if self.wait_on is not None:
            return self._waited(self.wait_on)
        return None

    async def _waited(self, fut: asyncio.Future[None]) -> None:
        await fut
        self.log.append(f"{self.name}.resumed")

    def response(self, req: Request, resp: Response) -> None:
        self.log.append(f"{self.name}.response:{resp.status}")

    def done(self, req: Request, status: int) -> None:
        self.log.append(f"{self.name}.done:{status}")


def terminal(log: list[str]) -> Any:
    async def backend(req: Request) -> Response:
        log.append("terminal")
        return Response(200, [], b"backend")
    return backend


async def test_phases_run_in_order_around_the_terminal() -> None:
    log: list[str] = []
    run = chain([Recorder("a", log), Recorder("b", log)], terminal(log))
    resp = await run(request())
    assert log == ["a.request", "b.request", "terminal", "b.response:200", "a.response:200",
                   "a.done:200", "b.done:200"]
    # headers from the request phases, on the answer, the inner filter's first
    assert [h for h in resp.headers if h[0].startswith(b"x-")] == [(b"x-b", b"1"), (b"x-a", b"1")]


async def test_a_filter_that_answers_is_seen_only_by_the_filters_before_it() -> None:
    log: list[str] = []
    run = chain([Recorder("a", log), Recorder("cache", log, answer=True), Recorder("c", log)],
                terminal(log))
    resp = await run(request())
    assert resp.body == b"from cache"
    assert log == ["a.request", "cache.request", "a.response:200", "a.done:200"]


async def test_a_refusal_is_the_envelope_and_the_filters_before_it_see_it() -> None:
    log: list[str] = []
    run = chain([Recorder("a", log), Recorder("limit", log, refuse=True), Recorder("c", log)],
                terminal(log))
    resp = await run(request())
    assert resp.status == 429 and isinstance(resp.error, HTTPError)
    assert json.loads(resp.body)["msg"] == "slow down"
    assert resp.header(b"retry-after") == b"1" and resp.header(b"x-a") == b"1"
    assert log == ["a.request", "limit.request", "a.response:429", "a.done:429"]


async def test_a_failing_phase_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def request(self, req: Request) -> None:
            raise KeyError("bug")

    with caplog.at_level(logging.ERROR, logger="wxgated"):
        resp = await chain([Broken()], terminal([]))(request())
    assert resp.status == 500 and json.loads(resp.body)["trace_id"] == "t"
    assert "KeyError" in caplog.text


async def test_a_phase_that_waits_resumes_from_its_future_without_a_task() -> None:
    log: list[str] = []
    reply: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    pipe = Pipeline([Recorder("a", log, wait_on=reply), Recorder("b", log)], terminal(log))
    answers: list[Response] = []
    tasks_before = asyncio.all_tasks()
    pipe.run(request(), lambda req, resp: answers.append(resp))
    assert log == ["a.request"] and not answers  # waiting on the reply
    assert asyncio.all_tasks() == tasks_before  # and nothing scheduled for it
    reply.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
        if answers:
            break
    assert log[:4] == ["a.request", "a.resumed", "b.request", "terminal"]
    assert answers[0].status == 200


async def test_a_phase_that_finishes_at_once_schedules_nothing() -> None:
    state = MemoryState()

    class Memory:  # an async phase whose awaits all answer at once (memory state)
        async def request(self, req: Request) -> None:
            await state.get("session")

    answers: list[Response] = []

    class Now:
        def start(self, req: Request, flow: Any) -> None:
            flow.respond(Response(204))

    Pipeline([Memory(), Memory()], Now()).run(request(), lambda r, resp: answers.append(resp))
    assert [a.status for a in answers] == [204]  # answered within the call
