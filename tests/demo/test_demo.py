"""`wxgated demo` black-box: a real `python -m wxgated demo` subprocess, its printed
"Try it" commands run as printed (bash + curl), the same steps again with urllib, the
sandbox bound to loopback only, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import free_port

READY = "Ctrl-C stops everything."


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    banner: str
    gateway: str
    admin: str
    stderr: Path

    def service(self, name: str) -> str:
        m = re.search(rf"^  {name} +(http://\S+)", self.banner, re.M)
        assert m, self.banner
        return m.group(1)

    def try_it(self) -> str:
        block = self.banner.split("Try it (in another terminal):", 1)[1]
        return block.split(READY, 1)[0]


def _read_banner(proc: subprocess.Popen[bytes], stderr: Path, timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    text, deadline = b"", time.monotonic() + timeout
    while READY.encode() not in text:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"demo did not start: {text!r}\n{stderr.read_text()}")
        text += proc.stdout.read() or b""
        time.sleep(0.05)
    return text.decode()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("demo")
    port, admin_port = free_port(), free_port()
    stderr = tmp / "stderr.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wxgated", "demo", "--port", str(port),
         "--admin-port", str(admin_port)],
        stdout=subprocess.PIPE, stderr=open(stderr, "wb"), cwd=str(tmp),
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        banner = _read_banner(proc, stderr)
        yield Demo(proc, banner, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}",
                   stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, stderr.read_text()


def call(url: str, body: dict[str, Any] | None = None,
         token: str | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def login(demo: Demo, code: str) -> str:
    status, doc = call(demo.gateway + "/auth/wx/login", {"code": code})
    assert status == 200 and doc["code"] == 0, doc
    return str(doc["data"]["token"])


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("python3")),
                    reason="needs curl and python3 on PATH, as the printed commands do")
def test_try_it_commands_work_as_printed(demo: Demo) -> None:
    out = subprocess.run(["bash", "-c", demo.try_it()], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    me = next(x for x in lines if x.get("user"))
    assert me == {"openid": "o-demo-alice",
                  "user": {"nickname": "Alice", "city": "Shenzhen", "level": "gold"}}
    assert any(x.get("code") == 0 and set(x["data"] or {}) == {"me", "orders"} for x in lines)
    assert any(x.get("code") == 429 for x in lines), out.stdout
    assert any(x.get("msg") == "invalid code" for x in lines), out.stdout
    assert 'wxgated_requests_total{method="GET",route="orders",status="429"}' in out.stdout


def test_login_proxy_and_aggregate(demo: Demo) -> None:
    token = login(demo, "demo-code-bob")
    status, me = call(demo.gateway + "/api/users/me", token=token)
    assert status == 200
    assert me == {"openid": "o-demo-bob",  # the backend's echo of the gateway's X-WX-OpenID
                  "user": {"nickname": "Bob", "city": "Hangzhou", "level": "silver"}}
    status, home = call(demo.gateway + "/api/home", token=token)
    assert status == 200 and home["code"] == 0
    assert home["data"]["me"] == me
    assert home["data"]["orders"]["openid"] == "o-demo-bob"
    assert [o["id"] for o in home["data"]["orders"]["orders"]] == ["B-2001"]


def test_burst_gets_a_429_envelope(demo: Demo) -> None:
    token = login(demo, "demo-code-bob")
    answers = [call(demo.gateway + "/api/orders", token=token) for _ in range(7)]
    assert [s for s, _ in answers[:5]] == [200] * 5
    limited = [doc for s, doc in answers if s == 429]
    assert limited, answers
    assert limited[0]["code"] == 429 and limited[0]["data"] is None and limited[0]["trace_id"]


def test_unknown_code_is_a_401_envelope(demo: Demo) -> None:
    status, doc = call(demo.gateway + "/auth/wx/login", {"code": "demo-code-mallory"})
    assert status == 401
    assert doc["code"] == 40029 and doc["data"] is None and doc["trace_id"]
    status, doc = call(demo.gateway + "/api/users/me")
    assert status == 401 and doc["code"] == 401


def test_admin_metrics(demo: Demo) -> None:
    with urllib.request.urlopen(demo.admin + "/metrics", timeout=10) as resp:
        assert b"wxgated_requests_total" in resp.read()


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a source address
        except OSError:
            return None
        addr = str(s.getsockname()[0])
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


@pytest.mark.parametrize("name", ["wechat", "users", "orders"])
def test_sample_services_listen_on_loopback_only(demo: Demo, name: str) -> None:
    url = demo.service(name)
    host, port = url.removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=5):
        pass  # it is there on loopback...
    other = _non_loopback_address()
    if other is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with pytest.raises(ConnectionRefusedError):  # ...and not on this machine's other address
        socket.create_connection((other, int(port)), timeout=5).close()


def test_readme_shows_the_commands_the_demo_prints_for_the_default_ports() -> None:
    from wxgated.demo.tryit import try_it

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Try the demo", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == try_it("http://127.0.0.1:8080", "http://127.0.0.1:9090")
