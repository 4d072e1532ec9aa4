"""Run wrk (pinned) and read its summary: requests, req/s, p50, p99, errors."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from benchlib.procs import pinned

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_LAT = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    raw: str


def run_wrk(url: str, duration: float, cpus: str | None, connections: int = 50,
            threads: int = 1, headers: tuple[str, ...] = (),
            script: str | None = None) -> WrkResult:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency",
           "--timeout", "5s"]
    if script is not None:  # e.g. bench/post.lua: method and body
        cmd += ["-s", script]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(pinned([*cmd, url], cpus), capture_output=True, text=True,
                         timeout=duration + 30)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    return parse(out.stdout)


def parse(text: str) -> WrkResult:
    lat = {m.group(1): float(m.group(2)) * _UNITS[m.group(3)] for m in _LAT.finditer(text)}
    total = _TOTAL.search(text)
    rps = _RPS.search(text)
    if not (total and rps and "50" in lat and "99" in lat):
        raise ValueError(f"cannot read wrk output:\n{text}")
    non2xx = _NON2XX.search(text)
    sock = _SOCKERR.search(text)
    return WrkResult(
        requests=int(total.group(1)), rps=float(rps.group(1)),
        p50_ms=lat["50"], p99_ms=lat["99"],
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        raw=text,
    )
