"""Child processes pinned with taskset, and what /proc says about them.

CPU per request is read from /proc/<pid>/stat (utime + stime, clock ticks) summed over a
process and all its descendants, so nginx's master+worker and wxgated's supervisor+workers
count whole. Everything started here is a direct child that `stop_all` ends by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
_children: list[subprocess.Popen[bytes]] = []


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the proxy under test gets, and which the load (wrk, upstream, redis)."""

    proxy: str | None
    load: str | None
    note: str

    @classmethod
    def detect(cls, proxy_cores: int = 1) -> CpuPlan:
        cpus = sorted(os.sched_getaffinity(0))
        if not shutil.which("taskset") or len(cpus) < 2:
            return cls(None, None, f"{len(cpus)} CPU(s): nothing pinned")
        if len(cpus) > proxy_cores:
            proxy, load = cpus[:proxy_cores], cpus[proxy_cores:]
            return cls(_cpulist(proxy), _cpulist(load),
                       f"proxy on CPU {_cpulist(proxy)}, load on CPU {_cpulist(load)}")
        return cls(_cpulist(cpus), _cpulist(cpus[-1:]),
                   f"proxy on CPU {_cpulist(cpus)} (shared: only {len(cpus)} CPUs), "
                   f"load on CPU {cpus[-1]}")


def _cpulist(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def spawn(cmd: list[str], cpus: str | None, log: Path, env: dict[str, str] | None = None,
          stdout: Path | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a child (pinned); stderr (and stdout unless given) go to `log`."""
    err = open(log, "ab")
    out = open(stdout, "ab") if stdout else err
    proc = subprocess.Popen(pinned(cmd, cpus), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd, start_new_session=True)
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL: the child and, being a session leader, its own children."""
    if proc.poll() is None:
        pids = tree_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in pids:
                _kill(pid)
            proc.wait(5)
    if proc in _children:
        _children.remove(proc)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_all() -> None:
    for proc in reversed(list(_children)):
        try:
            stop(proc)
        except Exception:  # noqa: BLE001 - cleanup must go on
            _kill(proc.pid)


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants, from /proc/*/stat."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return found


def cpu_ticks(pids: list[int]) -> tuple[int, int]:
    """(utime, stime) clock ticks summed over `pids` (ones that are gone count 0)."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0,
              host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")
