"""server.workers: N processes on one port, restarted when they die, metrics summed."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from typing import Any

from tests.support.gateway import metric_value

CONFIG = {
    "server": {"workers": 2},
    "routes": [{"name": "ping", "match": {"path": "/ping"}, "respond": {"json": {"pong": 1}}}],
}


def ping(url: str, n: int) -> None:
    for _ in range(n):
        with urllib.request.urlopen(url + "/ping", timeout=5) as r:  # a new connection each
            assert r.status == 200


def pids_seen(gw: Any) -> set[int]:
    return {d["pid"] for d in gw.log_lines() if d.get("route") == "ping"}


def wait_for(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_two_workers_serve_restart_and_sum_metrics(gateway: Any) -> None:
    gw = gateway(CONFIG)
    ping(gw.url, 200)
    wait_for(lambda: len(pids_seen(gw)) == 2)
    workers = pids_seen(gw)
    assert gw.proc.pid not in workers  # the supervisor itself does not serve
    wait_for(lambda: metric_value(gw.metrics(), "wxgated_requests_total", route="ping") == 200)

    victim = next(iter(workers))
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.5)
    before = metric_value(gw.metrics(), "wxgated_requests_total", route="ping")
    assert before >= 190  # a killed worker loses at most its last second of counts

    def replaced() -> bool:
        ping(gw.url, 20)
        return len(pids_seen(gw) - workers) >= 1

    wait_for(replaced, timeout=20)
    after = metric_value(gw.metrics(), "wxgated_requests_total", route="ping")
    assert after >= before  # counters never go backwards across a restart
    assert gw.stop() == 0


def test_reload_reaches_every_worker(gateway: Any) -> None:
    gw = gateway(CONFIG)
    new = {**CONFIG, "routes": CONFIG["routes"] + [
        {"name": "new", "match": {"path": "/new"}, "respond": {"json": {"new": 1}}}]}
    gw.write(new)

    def all_have_it() -> bool:
        try:
            for _ in range(20):
                with urllib.request.urlopen(gw.url + "/new", timeout=5) as r:
                    assert r.status == 200
            return True
        except urllib.error.HTTPError:
            return False

    wait_for(all_have_it)
    seen = {d["pid"] for d in gw.log_lines() if d.get("route") == "new"}
    assert len(seen) == 2
    wait_for(lambda: metric_value(gw.metrics(), "wxgated_config_reloads_total",
                                  result="success") == 1)


def test_several_workers_with_memory_sessions_is_a_config_error(tmp_path: Any) -> None:
    import subprocess
    import sys

    import yaml

    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "server": {"workers": 2},
        "jwt": {"keys": [{"kid": "k", "alg": "HS256", "secret": "x" * 32}]},
        "routes": [{"name": "me", "match": {"path": "/me"}, "filters": [{"jwt_auth": {}}],
                    "respond": {"json": {}}}]}, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "wxgated", "check", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"{path}:3:12:" in out.stderr and "state.backend redis" in out.stderr
