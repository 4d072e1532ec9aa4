"""The OpenTelemetry SDK is an optional extra: without it the gateway serves as ever,
and a config that asks for tracing is refused by `wxgated check` with a position and
what to install. Both run `wxgated` as a subprocess whose imports of `opentelemetry`
fail, as on a machine without the extra."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.support.servers import ThreadedApp, free_port, wait_port

# a `wxgated` whose `import opentelemetry...` raises ModuleNotFoundError
NO_OTEL = ("import sys; sys.modules['opentelemetry'] = None; "
           "from wxgated.cli import main; sys.exit(main(sys.argv[1:]))")


def wxgated(*args: str, **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", NO_OTEL, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def write(tmp: Path, cfg: dict[str, Any]) -> Path:
    path = tmp / "routes.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_check_names_the_missing_sdk_at_the_tracing_key(tmp_path: Path) -> None:
    path = write(tmp_path, {"version": 1, "observe": {"tracing": {
        "otlp": "http://127.0.0.1:4318/v1/traces"}}})
    proc = wxgated("check", "-c", str(path))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    text = (out + err).decode()
    # line 3, col 3: the `tracing:` key under `observe:`
    assert f"{path}:3:3: observe.tracing needs the OpenTelemetry SDK" in text, text
    assert "pip install 'wxgated[tracing]'" in text


def test_the_gateway_serves_without_the_sdk_when_tracing_is_off(tmp_path: Path) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"traceparent": request.headers.get("traceparent")})

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    upstream = ThreadedApp(app)
    up = upstream.url
    port, admin = free_port(), free_port()
    path = write(tmp_path, {"version": 1, "server": {"listen": f"127.0.0.1:{port}"},
                            "admin": {"listen": f"127.0.0.1:{admin}"},
                            "upstreams": {"u": {"targets": [{"url": up}]}},
                            "routes": [{"name": "r", "match": {"path": "/*rest"},
                                        "upstream": "u"}]})
    proc = wxgated("run", "-c", str(path), cwd=str(tmp_path))
    try:
        wait_port(port)
        loop_deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=5) as r:
                    doc = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > loop_deadline:
                    raise
                time.sleep(0.1)
        assert doc["traceparent"].startswith("00-") and doc["traceparent"].endswith("-01")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        upstream.stop()
    assert proc.returncode == 0, err.decode()
    assert b"opentelemetry" not in err
