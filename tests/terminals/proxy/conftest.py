"""Black-box: the proxy terminal, through one real `wxgated run` for the folder.

A request with no body (or a whole one) is written on an idle keep-alive upstream
connection and answered from the upstream protocol's callback; anything that needs
waiting (no idle connection, a stale one, a retry, a streamed answer, a body still
arriving) goes on in `forward`, in a task. Seen from outside, both must behave alike:
these tests warm the upstream pools first (so the request under test finds an idle
connection), then check what a client gets and what the upstreams really received,
against the same request with a body that waits for `100 Continue` (which always goes
through `forward`) where that comparison makes sense. Small Content-Length bodies that
arrive with their head are held until whole and written with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web

from tests.support.e2e_backend import Backend
from tests.support.e2e_identity_harness import HS_KEYS, StandIn, base_config
from tests.support.gateway import GatewayProcess
from tests.support.proxy_harness import NO_PASSIVE, OneShotUpstream, proxied, svc_app
from tests.support.servers import LoopThread, ThreadedApp, free_port, served


@pytest.fixture(scope="package")
def svc() -> Iterator[ThreadedApp]:
    yield from served(svc_app())


@pytest.fixture(scope="package")
def stale(loop_thread: LoopThread) -> dict[str, OneShotUpstream]:
    return {"fin": OneShotUpstream(loop_thread, rst=False),
            "rst": OneShotUpstream(loop_thread, rst=True)}


@pytest.fixture(scope="package")
def short_keepalive(loop_thread: LoopThread) -> Iterator[str]:
    """An aiohttp upstream that closes keep-alive connections idle for 100 ms."""

    async def start() -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(svc_app(), access_log=None, keepalive_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, f"http://127.0.0.1:{port}"

    runner, url = loop_thread.run(start())
    yield url
    loop_thread.run(runner.cleanup())


@pytest.fixture(scope="package")
def backends() -> Iterator[dict[str, Backend]]:
    started = {n: Backend(n).start() for n in ("R1", "R2", "R3", "S1", "S2")}
    yield started
    for b in started.values():
        b.stop()


@pytest.fixture(scope="package")
def standin() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.server.stop()


@pytest.fixture(scope="package")
def gw(svc: ThreadedApp, stale: dict[str, OneShotUpstream], short_keepalive: str,
       backends: dict[str, Backend], standin: StandIn,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    cfg = base_config(standin.url, svc.url, HS_KEYS)  # wechat login, jwt, upstream svc
    b = backends
    cfg["upstreams"].update({
        "stale-fin": {"targets": [{"url": stale["fin"].url}]},
        "stale-rst": {"targets": [{"url": stale["rst"].url}]},
        "shortka": {"targets": [{"url": short_keepalive}]},
        "r503": {"targets": [{"url": b["R1"].url}, {"url": b["R2"].url}],
                 "passive_health": NO_PASSIVE, "retries": {"attempts": 2, "on": [503]}},
        "rdead": {"targets": [{"url": f"http://127.0.0.1:{free_port()}"},
                              {"url": b["R3"].url}],
                  "passive_health": NO_PASSIVE,
                  "retries": {"attempts": 2, "on": ["connect_error"]}},
        "deadline": {"targets": [{"url": b["S1"].url}, {"url": b["S2"].url}],
                     "passive_health": NO_PASSIVE,
                     "retries": {"attempts": 3, "on": ["timeout"],
                                 "per_try_timeout": "400ms", "deadline": "600ms"}},
    })
    limit = {"rate_limit": {"rate": 2, "per": "10s", "key": "header.X-Bucket",
                            "store": "local"}}
    cfg["routes"] += [
        proxied("fp", "svc"),
        proxied("short", "svc", timeout="200ms"),
        proxied("stale-fin", "stale-fin"),
        proxied("stale-rst", "stale-rst"),
        proxied("shortka", "shortka"),
        proxied("r503", "r503"),
        proxied("rdead", "rdead"),
        proxied("deadline", "deadline"),
        proxied("guard", "svc", limit, {"jwt_auth": {}}),
        proxied("capped", "svc", max_body="100"),
        {"name": "only-get", "match": {"path": "/only-get", "methods": ["GET"]},
         "upstream": "svc"},
    ]
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-fast"), cfg).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def loop_thread() -> Iterator[LoopThread]:
    """The loop of this folder's raw upstreams, which serve every module in it."""
    lt = LoopThread()
    yield lt
    lt.stop()
