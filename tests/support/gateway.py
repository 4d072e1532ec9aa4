"""Run `wxgated run` as a real subprocess for black-box tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import free_port


class GatewayProcess:
    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None):
        self.tmp = tmp
        self.port = free_port()
        self.admin_port = free_port()
        config = dict(config)
        config.setdefault("version", 1)
        server = dict(config.get("server", {}))
        server["listen"] = f"127.0.0.1:{self.port}"
        config["server"] = server
        config["admin"] = {"listen": f"127.0.0.1:{self.admin_port}"}
        self.config = config
        self.path = tmp / "routes.yaml"
        self.write(config)
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.stdout_path = tmp / "stdout.log"
        self.stderr_path = tmp / "stderr.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.args = ["-c", str(self.path)]  # where `wxgated run` takes its config from

    def write(self, config: dict[str, Any] | str) -> None:
        """Replace the config file. A dict keeps the harness's listen addresses unless it
        names its own: a reload that moves them is only applied by a restart (and
        counted as result="partial"), which only the tests about that want."""
        if not isinstance(config, str) and hasattr(self, "port"):
            config = dict(config)
            config.setdefault("version", 1)
            config["server"] = {"listen": f"127.0.0.1:{self.port}", **config.get("server", {})}
            config["admin"] = {"listen": f"127.0.0.1:{self.admin_port}",
                               **config.get("admin", {})}
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)  # like an editor: a new inode, never a half-written file

    def start(self, wait: bool = True) -> GatewayProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wxgated", "run", *self.args],
            stdout=open(self.stdout_path, "wb"), stderr=open(self.stderr_path, "wb"),
            env=self.env, cwd=str(self.tmp),
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.stderr()}")
            try:
                with urllib.request.urlopen(self.admin + "/readyz", timeout=0.5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"gateway not ready: {self.stderr()}")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stdout().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def metrics(self) -> str:
        with urllib.request.urlopen(self.admin + "/metrics", timeout=5) as r:
            return r.read().decode()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p)) if rest else ""
        if all(f'{k}="{v}"' in got for k, v in labels.items()) or (not want and not got):
            total += float(value)
    return total
