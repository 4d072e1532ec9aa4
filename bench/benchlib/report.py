"""Medians over interleaved rounds, ratios to nginx from the same rounds, the printed
table, the machine description and the entry appended to bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchlib.procs import TICK

BUDGET = {"bare": 2.0, "full": 3.5}


@dataclass(frozen=True)
class Sample:
    scenario: str
    round: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    user_ticks: int
    sys_ticks: int
    errors: int

    @property
    def cpu_us(self) -> float:
        return (self.user_ticks + self.sys_ticks) * 1e6 / TICK / max(self.requests, 1)

    @property
    def sys_us(self) -> float:
        return self.sys_ticks * 1e6 / TICK / max(self.requests, 1)


@dataclass(frozen=True)
class Summary:
    scenario: str
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    sys_us: float
    cpu_ratio: float | None  # median over rounds of (scenario / nginx in the same round)
    rps_ratio: float | None
    errors: int


# scenarios compared with another nginx run than the plain GET one
REFERENCE = {"post": "nginx-post"}


def summarize(samples: list[Sample], baseline: str = "nginx") -> list[Summary]:
    names = list(dict.fromkeys(s.scenario for s in samples))
    by_round: dict[str, dict[int, Sample]] = {}
    for s in samples:
        by_round.setdefault(s.scenario, {})[s.round] = s
    out = []
    for name in names:
        mine = [s for s in samples if s.scenario == name]
        base = by_round.get(REFERENCE.get(name.split("@")[0], baseline), {})
        paired = [(s, base[s.round]) for s in mine if s.round in base]
        med = statistics.median
        out.append(Summary(
            name, len(mine), med(s.rps for s in mine), med(s.p50_ms for s in mine),
            med(s.p99_ms for s in mine), med(s.cpu_us for s in mine),
            med(s.sys_us for s in mine),
            med(s.cpu_us / b.cpu_us for s, b in paired) if paired else None,
            med(s.rps / b.rps for s, b in paired) if paired else None,
            sum(s.errors for s in mine),
        ))
    return out


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def table(rows: list[Summary], labels: dict[str, str]) -> str:
    lines = [
        "| scenario | req/s | p50 ms | p99 ms | CPU µs/req (sys) | CPU ×nginx | req/s ×nginx "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {labels.get(r.scenario, r.scenario)} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.cpu_us:.1f} ({r.sys_us:.1f}) | {_x(r.cpu_ratio)} | "
            f"{_x(r.rps_ratio)} | {r.errors} |")
    return "\n".join(lines)


def budget_lines(rows: list[Summary]) -> list[str]:
    out = []
    for r in rows:
        limit = BUDGET.get(r.scenario)
        if limit is not None and r.cpu_ratio is not None:
            verdict = "within" if r.cpu_ratio <= limit else "OVER"
            out.append(f"- {r.scenario}: {r.cpu_ratio:.2f}× nginx CPU/req, budget ≤ {limit}× "
                       f"→ {verdict} budget")
    return out


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine(python: str, repo: Path) -> dict[str, str]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(repo), "status", "--porcelain", "--", "wxgated"])
    return {
        "cpu": model, "nproc": str(os.cpu_count()), "kernel": platform.release(),
        "python": _first_line([python, "--version"]),
        "nginx": _first_line(["nginx", "-v"]).removeprefix("nginx version: "),
        "wrk": _first_line(["wrk", "-v"]).split(" [")[0],
        "redis": _first_line(["redis-server", "--version"]).split(" sha=")[0],
        "wxgated": commit + (" + uncommitted changes" if dirty not in ("", "?") else "")
        + " (build " + _first_line([python, "-c", "import wxgated.build as b; print(b.describe())"])
        + ")",
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def entry(title: str, info: dict[str, str], method: str, rows: list[Summary],
          labels: dict[str, str], notes: list[str]) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    m = info
    parts = [
        f"## {when} — {title}", "",
        f"Machine: {m['cpu']}, {m['nproc']} CPUs, Linux {m['kernel']}; {m['python']}; "
        f"{m['nginx']}; {m['wrk']}; {m['redis']}; wxgated {m['wxgated']}. "
        f"Load average at start: {m['load']}.", "",
        method, "",
        table(rows, labels), "",
        *budget_lines(rows), *(f"- {n}" for n in notes), "",
    ]
    return "\n".join(parts) + "\n"


def append(path: Path, text: str) -> None:
    if not path.exists():
        path.write_text("# Benchmark results\n\nAppended by `bash bench/run.sh` (see "
                        "bench/README.md for the method). Compare figures only within one "
                        "entry.\n\n")
    with open(path, "a") as f:
        f.write(text)
