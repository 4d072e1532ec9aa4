"""The shipped unit file: required directives, and `systemd-analyze verify` when available."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "wxgated.service"
ENV_EXAMPLE = ROOT / "systemd" / "wxgated.env.example"
EXEC = "/usr/local/bin/wxgated"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → key → values (systemd keys may repeat, so configparser won't do)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line}"
        sections[current][key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def one(unit: dict, key: str, section: str = "Service") -> str:
    values = unit[section].get(key)
    assert values, f"{section}.{key} missing"
    return values[-1]


REQUIRED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "KillMode": "mixed",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
    "RuntimeDirectory": "wxgated",
    "EnvironmentFile": "-/etc/wxgated/wxgated.env",
}


@pytest.mark.parametrize(("key", "value"), sorted(REQUIRED.items()))
def test_required_directive(unit, key: str, value: str) -> None:
    assert one(unit, key) == value


def test_runs_the_daemon_with_the_documented_config(unit) -> None:
    assert one(unit, "ExecStart") == f"{EXEC} run -c /etc/wxgated/routes.yaml"
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


def test_runs_as_an_unprivileged_identity(unit) -> None:
    dynamic = unit["Service"].get("DynamicUser") == ["yes"]
    user = unit["Service"].get("User", ["root"])[-1]
    assert dynamic or user not in ("root", "0")


def test_watchdog_and_fd_limit(unit) -> None:
    assert seconds(one(unit, "WatchdogSec")) >= 10  # pinged every WatchdogSec/2
    assert int(one(unit, "LimitNOFILE")) >= 2 * 100_000 + 10_000  # 2 fds per proxied conn


def test_stop_timeout_covers_the_default_shutdown_grace(unit) -> None:
    # server.timeouts.shutdown_grace defaults to 15s; the supervisor adds a 2s margin.
    assert seconds(one(unit, "TimeoutStopSec")) > 15 + 2


def test_syscall_filter_keeps_the_service_set(unit) -> None:
    filters = unit["Service"]["SystemCallFilter"]
    assert "@system-service" in filters
    assert all("@process" not in f and "@ipc" not in f for f in filters)  # spawn, memfd


def test_metrics_dir_is_in_the_runtime_directory(unit) -> None:
    envs = dict(v.split("=", 1) for v in unit["Service"]["Environment"])
    assert envs["WXGATED_METRICS_DIR"].startswith("/run/" + one(unit, "RuntimeDirectory") + "/")


def test_env_example_is_plain_assignments() -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", line), line


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # The real unit: the only complaint allowed is the binary missing on this machine.
    out = subprocess.run([ANALYZE, "verify", str(UNIT)], capture_output=True, text=True)
    problems = [ln for ln in (out.stdout + out.stderr).splitlines()
                if ln.strip() and EXEC not in ln]
    assert problems == [], problems
    # The same unit with an executable that exists here must verify with no output at all.
    copy = tmp_path / "wxgated.service"
    copy.write_text(UNIT.read_text().replace(EXEC, "/bin/true"))
    out = subprocess.run([ANALYZE, "verify", str(copy)], capture_output=True, text=True)
    assert (out.returncode, out.stdout + out.stderr) == (0, "")


@needs_analyze
def test_systemd_analyze_security_rates_it_ok() -> None:
    out = subprocess.run([ANALYZE, "security", "--offline=true", str(UNIT)],
                         capture_output=True, text=True)
    m = re.search(r"Overall exposure level for wxgated.service: ([\d.]+) (\w+)", out.stdout)
    if m is None:
        pytest.skip(f"this systemd-analyze cannot rate unit files offline: {out.stderr.strip()}")
    assert float(m.group(1)) <= 2.0, out.stdout
