"""Black-box: `wxgated run --config-source nacos://...` against the Nacos stand-in
(tests/support/nacos_standin.py, auth on): the config comes from Nacos, a published change is
applied through the long-poll listener, a broken version is refused with its position
and the old one keeps serving, and the local copy carries a restart through an outage.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gateway import GatewayProcess, metric_value
from tests.support.nacos_standin import NacosStandin

USERS = {"gateway": "n4cos-pw"}
ENV = {"WXGATED_NACOS_USERNAME": "gateway", "WXGATED_NACOS_PASSWORD": "n4cos-pw"}
DATA_ID, GROUP, NAMESPACE = "wxgated.yaml", "GW_GROUP", "ns-prod"


@pytest.fixture
def nacos() -> Iterator[NacosStandin]:
    server = NacosStandin(users=USERS).start()
    yield server
    server.close()


def source_url(nacos: NacosStandin) -> str:
    return (f"nacos://127.0.0.1:{nacos.port}?dataId={DATA_ID}&group={GROUP}"
            f"&namespace={NAMESPACE}")


def label(nacos: NacosStandin) -> str:
    return f"nacos://127.0.0.1:{nacos.port}/{DATA_ID}?group={GROUP}&namespace={NAMESPACE}"


Make = Callable[..., GatewayProcess]


@pytest.fixture
def make(tmp_path: Path, nacos: NacosStandin) -> Iterator[Make]:
    """`make(cache=None, env=ENV)`: a `wxgated run --config-source` process, not started
    yet; every one shares the same local copy path unless told otherwise."""
    procs: list[GatewayProcess] = []

    def _make(cache: Path | None = None, env: dict[str, str] | None = None,
              ports_from: GatewayProcess | None = None) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(procs)}"
        workdir.mkdir()
        gw = GatewayProcess(workdir, {}, ENV if env is None else env)
        if ports_from is not None:  # a restart: the published config names these ports
            gw.port, gw.admin_port = ports_from.port, ports_from.admin_port
            gw.url, gw.admin = ports_from.url, ports_from.admin
        gw.args = ["--config-source", source_url(nacos),
                   "--config-cache", str(cache or tmp_path / "cache" / "wxgated.yaml")]
        procs.append(gw)
        return gw

    yield _make
    for gw in procs:
        gw.stop()


def config(gw: GatewayProcess, answer: str, **server: Any) -> str:
    return yaml.safe_dump({
        "version": 1,
        "server": {"listen": f"127.0.0.1:{gw.port}", **server},
        "admin": {"listen": f"127.0.0.1:{gw.admin_port}"},
        "routes": [{"name": "v", "match": {"path": "/v"}, "respond": {"json": {"v": answer}}}],
    }, sort_keys=False)


def publish(nacos: NacosStandin, text: str) -> None:
    nacos.publish(DATA_ID, text, GROUP, NAMESPACE)


def answer(gw: GatewayProcess) -> str:
    with urllib.request.urlopen(gw.url + "/v", timeout=5) as r:
        return str(json.loads(r.read())["v"])


def until(check: Callable[[], bool], within: float = 8.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_serves_nacos_and_a_published_change_wakes_the_listener(
        nacos: NacosStandin, make: Make, tmp_path: Path) -> None:
    gw = make()
    v1 = config(gw, "one")
    publish(nacos, v1)
    gw.start()
    assert answer(gw) == "one"
    until(lambda: len(nacos.listens) >= 1)
    listen = nacos.listens[0]
    assert listen["form"]["Listening-Configs"] == \
        f"{DATA_ID}\x02{GROUP}\x02{md5(v1)}\x02{NAMESPACE}\x01"
    assert listen["headers"]["Long-Pulling-Timeout"] == "30000"
    assert listen["query"]["accessToken"].startswith("token-")
    fetches = [r for r in nacos.requests if r["path"] == "/nacos/v1/cs/configs"]
    assert fetches[0]["query"] == {"dataId": DATA_ID, "group": GROUP, "tenant": NAMESPACE,
                                   "accessToken": fetches[0]["query"]["accessToken"]}
    v2 = config(gw, "two")
    publish(nacos, v2)
    # the listener is held for 29.5 s when nothing changes: only the early wake on
    # publish can apply it this fast
    assert until(lambda: answer(gw) == "two", within=5) < 5
    assert (tmp_path / "cache" / "wxgated.yaml").read_text() == v2
    assert metric_value(gw.metrics(), "wxgated_config_reloads_total", result="success") == 1
    assert nacos.logins == 1
    assert "n4cos-pw" not in gw.stdout() + gw.stderr()


def test_a_broken_version_is_refused_with_its_position(
        nacos: NacosStandin, make: Make, tmp_path: Path) -> None:
    gw = make()
    v1 = config(gw, "one")
    publish(nacos, v1)
    gw.start()
    broken = v1.replace("routes:", "routse:")
    line = broken.splitlines().index("routse:") + 1
    publish(nacos, broken)
    until(lambda: any(e.get("msg") == "config reload failed" for e in gw.log_lines()))
    issues = [e["issue"] for e in gw.log_lines() if e.get("msg") == "config reload failed"]
    assert any(i.startswith(f"{label(nacos)}:{line}:1: ") and "routse" in i for i in issues), \
        issues
    assert answer(gw) == "one"
    assert (tmp_path / "cache" / "wxgated.yaml").read_text() == v1
    assert metric_value(gw.metrics(), "wxgated_config_reloads_total", result="failure") == 1
    publish(nacos, config(gw, "three"))  # fixed: applied as usual
    until(lambda: answer(gw) == "three", within=5)


def test_a_restart_with_nacos_down_uses_the_local_copy(
        nacos: NacosStandin, make: Make) -> None:
    first = make()
    publish(nacos, config(first, "one"))
    first.start()
    assert answer(first) == "one"
    first.stop()
    nacos.stop()
    again = make(ports_from=first)
    again.start()
    assert answer(again) == "one"
    assert "starting from the local copy" in again.stderr()
    nacos.start()  # back on the same port, with a newer version published meanwhile
    publish(nacos, config(first, "two"))
    until(lambda: answer(again) == "two", within=12)  # the listener's retry: 1 s, 2 s, ...


def test_no_local_copy_and_nacos_down_refuses_to_start(
        nacos: NacosStandin, make: Make, tmp_path: Path) -> None:
    nacos.stop()
    gw = make(cache=tmp_path / "none" / "copy.yaml")
    gw.start(wait=False)
    assert gw.proc is not None
    assert gw.proc.wait(20) == 1
    err = gw.stderr()
    assert "no local copy at" in err and str(tmp_path / "none" / "copy.yaml") in err


def test_wrong_credentials_are_a_refused_start(nacos: NacosStandin, make: Make,
                                               tmp_path: Path) -> None:
    gw = make(env={"WXGATED_NACOS_USERNAME": "gateway", "WXGATED_NACOS_PASSWORD": "wr0ng-pw-9"})
    publish(nacos, config(gw, "one"))
    gw.start(wait=False)
    assert gw.proc is not None and gw.proc.wait(20) == 1
    assert "403" in gw.stderr() and "wr0ng-pw-9" not in gw.stderr()
    assert all(r["path"] != "/nacos/v1/cs/configs" or "accessToken" in r["query"]
               for r in nacos.requests)


def test_workers_reload_from_the_supervisors_copy(nacos: NacosStandin, make: Make) -> None:
    gw = make()
    publish(nacos, config(gw, "one", workers=2))
    gw.start()
    assert {answer(gw) for _ in range(6)} == {"one"}
    publish(nacos, config(gw, "two", workers=2))
    until(lambda: {answer(gw) for _ in range(8)} == {"two"}, within=8)
    assert len(nacos.listens) <= 3  # one listener, in the supervisor, not one per worker


def test_check_validates_what_nacos_holds(nacos: NacosStandin, make: Make) -> None:
    gw = make()
    good = config(gw, "one")
    publish(nacos, good)
    cmd = [sys.executable, "-m", "wxgated", "check", "--config-source", source_url(nacos)]
    ok = subprocess.run(cmd, env=gw.env, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and f"{label(nacos)}: ok" in ok.stdout
    publish(nacos, good.replace("listen: 127", "listne: 127", 1))
    bad = subprocess.run(cmd, env=gw.env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1
    assert f"{label(nacos)}:3:3: " in bad.stderr and "listne" in bad.stderr


def test_a_broken_version_at_start_falls_back_to_the_local_copy(
        nacos: NacosStandin, make: Make, tmp_path: Path) -> None:
    first = make()
    good = config(first, "one")
    publish(nacos, good)
    first.start()
    first.stop()
    publish(nacos, good.replace("listen:", "listne:", 1))
    again = make(ports_from=first)
    again.start()
    assert answer(again) == "one"
    err = again.stderr()
    assert f"config in Nacos rejected: {label(nacos)}:3:3: " in err
    assert "starting from the local copy" in err
    assert (tmp_path / "cache" / "wxgated.yaml").read_text() == good
    nacos.change(lambda: nacos.configs.clear())  # deleted in Nacos: keeps serving
    until(lambda: "was deleted in Nacos" in again.stderr())
    assert answer(again) == "one"
    metrics = again.metrics()  # not a version: nothing compiled, nothing refused
    assert metric_value(metrics, "wxgated_config_reloads_total", result="failure") == 0
    assert metric_value(metrics, "wxgated_config_reloads_total", result="success") == 0
    publish(nacos, config(first, "two"))
    until(lambda: answer(again) == "two", within=5)
