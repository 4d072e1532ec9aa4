"""Hot reload: file changes, SIGHUP, symlink swaps, bad files; never a dropped request."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.support.gateway import GatewayProcess, metric_value
from tests.support.servers import ThreadedApp, served


def upstream_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


def config(upstream_url: str, version: int) -> dict[str, Any]:
    return {
        "upstreams": {"svc": {"targets": [{"url": upstream_url}]}},
        "routes": [
            {"name": "api", "match": {"path": "/api/*rest"}, "upstream": "svc"},
            {"name": f"v{version}", "match": {"path": f"/v{version}", "methods": ["GET"]},
             "respond": {"json": {"version": version}}},
        ],
    }


def bad_config(kind: int) -> str:
    return [
        "version: 1\nroutes:\n  - name: x\n    match: {path: /x}\n    respond: {status: 200\n",
        "version: 1\nroutes:\n  - name: x\n    match: {path: /x, methods: [GET]}\n    respnd: {}\n",
        "version: 1\nroutes:\n  - name: x\n    match: {path: /x}\n    upstream: nowhere\n",
    ][kind % 3]


async def wait_status(url: str, status: int, within: float) -> float:
    start = time.monotonic()
    async with aiohttp.ClientSession() as s:
        while time.monotonic() - start < within:
            async with s.get(url) as r:
                if r.status == status:
                    return time.monotonic() - start
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer {status} within {within}s")


async def test_reload_under_load_drops_nothing(gateway: Any, upstream: ThreadedApp) -> None:
    gw = gateway(config(upstream.url, 0))
    failures: list[str] = []
    counts = {"ok": 0}
    stop = asyncio.Event()

    async def hammer() -> None:
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                for path in ("/api/x", "/v0"):
                    try:
                        async with s.get(gw.url + path) as r:
                            await r.read()
                            if r.status != 200 and not (path == "/v0" and r.status == 404):
                                failures.append(f"{path}: {r.status}")
                            else:
                                counts["ok"] += 1
                    except aiohttp.ClientError as exc:
                        failures.append(f"{path}: {exc!r}")

    workers = [asyncio.create_task(hammer()) for _ in range(4)]
    latencies = []
    start = time.monotonic()
    for n in range(1, 21):
        if n % 4 == 0:
            gw.write(bad_config(n))
            await asyncio.sleep(0.4)
        else:
            gw.write(config(upstream.url, n))
            latencies.append(await wait_status(f"{gw.url}/v{n}", 200, within=2.0))
    while time.monotonic() - start < 10:
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*workers)
    assert failures == []
    assert counts["ok"] > 500
    assert max(latencies) < 2.0
    text = gw.metrics()
    assert metric_value(text, "wxgated_config_reloads_total", result="success") >= 15
    assert metric_value(text, "wxgated_config_reloads_total", result="failure") >= 5


async def test_bad_reload_keeps_old_config_and_logs_position(gateway: Any,
                                                             upstream: ThreadedApp) -> None:
    gw = gateway(config(upstream.url, 1))
    gw.write(bad_config(1))
    deadline = time.monotonic() + 5
    while "failure" not in gw.metrics() or metric_value(
            gw.metrics(), "wxgated_config_reloads_total", result="failure") < 1:
        assert time.monotonic() < deadline, "reload failure not counted"
        await asyncio.sleep(0.1)
    await wait_status(gw.url + "/v1", 200, within=1)
    errors = [d for d in gw.log_lines() if d.get("msg") == "config reload failed"]
    assert errors and f"{gw.path}:5:5:" in errors[0]["issue"]


async def test_sighup_reloads(gateway: Any, upstream: ThreadedApp, tmp_path: Path) -> None:
    gw = gateway(config(upstream.url, 1))
    # write without a content change the watcher could see first: same content, then HUP
    gw.write(config(upstream.url, 2))
    gw.signal(signal.SIGHUP)
    await wait_status(gw.url + "/v2", 200, within=2)
    await wait_status(gw.url + "/v1", 404, within=1)


async def test_symlink_swap_like_a_configmap(gateway: Any, upstream: ThreadedApp,
                                             tmp_path: Path) -> None:
    gw = gateway(config(upstream.url, 1))
    cfgdir = gw.tmp
    real1 = cfgdir / "..2026_1"
    real1.mkdir()
    (real1 / "routes.yaml").write_text(gw.path.read_text())
    os.symlink("..2026_1", cfgdir / "..data")
    os.replace(gw.path, cfgdir / "old.yaml")
    os.symlink("..data/routes.yaml", gw.path)
    await asyncio.sleep(0.5)
    real2 = cfgdir / "..2026_2"
    real2.mkdir()
    text = yaml.safe_dump({**yaml.safe_load(gw.path.read_text()),
                           "routes": config(upstream.url, 2)["routes"]})
    (real2 / "routes.yaml").write_text(text)
    os.symlink("..2026_2", cfgdir / "..data_tmp")
    os.replace(cfgdir / "..data_tmp", cfgdir / "..data")  # the atomic swap kubelet does
    await wait_status(gw.url + "/v2", 200, within=3)


async def test_file_missing_for_a_moment(gateway: Any, upstream: ThreadedApp) -> None:
    gw = gateway(config(upstream.url, 1))
    saved = yaml.safe_load(gw.path.read_text())
    gw.path.unlink()
    await asyncio.sleep(0.6)
    await wait_status(gw.url + "/v1", 200, within=1)  # still serving the old config
    saved["routes"] = config(upstream.url, 3)["routes"]
    gw.write(saved)
    await wait_status(gw.url + "/v3", 200, within=3)


def test_broken_config_at_startup_exits_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("version: 1\nserver:\n  listne: ':8080'\nroutes: []\n")
    proc = subprocess.run([sys.executable, "-m", "wxgated", "run", "-c", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert f"{path}:3:3:" in proc.stderr and "listne" in proc.stderr


def test_sigterm_finishes_in_flight_request(tmp_path: Path) -> None:
    import threading
    import urllib.request

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"done": True})

    app = web.Application()
    app.router.add_get("/slow", slow)
    up = ThreadedApp(app)
    gw = GatewayProcess(tmp_path, {
        "upstreams": {"svc": {"targets": [{"url": up.url}]}},
        "routes": [{"name": "slow", "match": {"path": "/slow"}, "upstream": "svc"}]}).start()
    result: dict[str, Any] = {}

    def call() -> None:
        with urllib.request.urlopen(gw.url + "/slow", timeout=10) as r:
            result["status"] = r.status
            result["body"] = r.read()

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.5)
    gw.signal(signal.SIGTERM)
    assert gw.proc is not None
    assert gw.proc.wait(10) == 0
    t.join(5)
    up.stop()
    assert result["status"] == 200 and b"done" in result["body"]
