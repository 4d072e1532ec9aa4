"""What bench/connections.py measured, and its entry for bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from benchlib.limits import Plan
from benchlib.memory import Memory, per_conn, top_slab_growth

RSS_BUDGET_KIB = 5.0  # gateway memory per idle connection
P99_BUDGET = 1.2  # p99 of light traffic while held ÷ with none held


@dataclass(frozen=True)
class Ramp:
    held: int  # after the ramp
    opened: int
    failed: int
    seconds: float
    mem: Memory


@dataclass
class Run:
    plan: Plan
    nofile: int
    notes: list[str] = field(default_factory=list)
    ramps: list[Ramp] = field(default_factory=list)
    before: Memory | None = None
    after: Memory | None = None  # settled, once the last ramp is done
    idle: dict[str, object] = field(default_factory=dict)  # light traffic, none held
    during: dict[str, object] = field(default_factory=dict)  # while connecting
    held_light: dict[str, object] = field(default_factory=dict)  # while all are held
    after_light: dict[str, object] = field(default_factory=dict)  # none held again, at the end
    held_end: int = 0  # still held after the light traffic
    lost: int = 0  # closed by the gateway while held
    gateway_alive: bool = False
    closed: int = 0
    stopped: str = ""
    light: str = ""  # the light traffic's shape, for the method line
    cpu_none: float = 0.0  # gateway CPU, % of one CPU, idle with none held
    cpu_held: float = 0.0  # the same with all held


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB" if kib < 10 * 1048576 else f"{kib / 1048576:,.2f} GiB"


def _mem_row(label: str, secs: str, rate: str, m: Memory, base: Memory, n: int) -> str:
    return (f"| {label} | {secs} | {rate} | {_mib(m.rss_kib)} | "
            f"{per_conn(m.rss_kib, base.rss_kib, n):.2f} | "
            f"{per_conn(m.pss_kib, base.pss_kib, n):.2f} | {_mib(m.tcp_mem_kib)} | "
            f"{per_conn(m.slab_kib, base.slab_kib, n):.2f} | "
            f"{per_conn(m.sunreclaim_kib, base.sunreclaim_kib, n):.2f} | "
            f"{_mib(m.available_kib)} |")


def _light_row(label: str, r: dict[str, object]) -> str:
    paths = r.get("paths") or {}
    cells = []
    for p in paths.values():  # type: ignore[attr-defined]
        cells += [f"{p['p50']:.2f}", f"{p['p99']:.2f}"]
    n = sum(p["n"] for p in paths.values())  # type: ignore[attr-defined]
    return f"| {label} | " + " | ".join(cells) + f" | {n:,} | {r.get('errors', '?')} |"


def _p99(r: dict[str, object], i: int) -> float:
    paths = list((r.get("paths") or {}).values())  # type: ignore[attr-defined]
    return float(paths[i]["p99"]) if len(paths) > i else 0.0


def render(run: Run, info: dict[str, str], command: str) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    plan = run.plan
    held = run.ramps[-1].held if run.ramps else 0
    lines = [
        f"## {when} — {held:,} idle keep-alive connections (bench/connections.py)", "",
        f"Machine: {info['cpu']}, {info['nproc']} CPUs, Linux {info['kernel']}; "
        f"{info['python']}; {info['nginx']}; wxgated {info['wxgated']}. Load average at "
        f"start: {info['load']}.", "",
        f"Command: `{command}`", "",
        f"Method: `wxgated run` on bench/gateway-conns.yaml with {plan.workers} workers "
        f"(`max_connections: {plan.per_worker_max:,}` each; RLIMIT_NOFILE {run.nofile:,} per "
        f"process); {plan.clients} client processes (bench/benchlib/holder.py: epoll, one fd "
        f"per held connection) over {len(plan.sources):,} source addresses "
        f"(127.1.x.y, ≤ {plan.per_source:,} each); every connection answered once "
        "(`GET /hello`, a `respond:` route) and then held. Memory per connection = "
        "(reading − reading before the first ramp) ÷ connections held: RSS/Pss summed "
        "over the supervisor and workers; kernel from /proc/meminfo (Slab, SUnreclaim) and "
        "/proc/net/sockstat (TCP `mem`), both ends of each connection being on this host.",
        "",
        "| held | ramp s | accepted/s | gateway RSS | Δ RSS KiB/conn | Δ Pss KiB/conn "
        "| TCP mem | Δ Slab KiB/conn | Δ SUnreclaim KiB/conn | MemAvailable |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if run.before is not None:
        lines.append(_mem_row("0", "—", "—", run.before, run.before, 0))
        for r in run.ramps:
            lines.append(_mem_row(f"{r.held:,}", f"{r.seconds:.1f}",
                                  f"{r.opened / r.seconds:,.0f}" if r.seconds else "—",
                                  r.mem, run.before, r.held))
        if run.after is not None and held:
            lines.append(_mem_row(f"{held:,}, settled", "—", "—", run.after, run.before,
                                  held))
    lines += ["", _light_method(run), "",
              "| light traffic | /hello p50 ms | /hello p99 ms | /api p50 ms | /api p99 ms "
              "| requests | errors |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, light in (("none held", run.idle), ("while connecting", run.during),
                         (f"{held:,} held", run.held_light),
                         ("none held, after closing them", run.after_light)):
        if light:
            lines.append(_light_row(label, light))
    lines += ["", *_verdicts(run, held), *(f"- {n}" for n in run.notes), ""]
    return "\n".join(lines) + "\n"


def _light_method(run: Run) -> str:
    return (f"Light traffic (bench/benchlib/light.py): {run.light}, and once more after "
            "the held ones are closed (how far the machine drifted meanwhile); keep-alive "
            "connections of their own, alternating `/hello` (`respond:`) and "
            "`/api/items/42` (`upstream:` nginx); latency counted from when each request "
            "was due.")


def _verdicts(run: Run, held: int) -> list[str]:
    out = []
    if run.after is not None and run.before is not None and held:
        a, b = run.after, run.before
        rss = per_conn(a.rss_kib, b.rss_kib, held)
        pss = per_conn(a.pss_kib, b.pss_kib, held)
        out.append(f"- budget: gateway memory ≤ {RSS_BUDGET_KIB:g} KiB per idle connection → "
                   f"RSS {rss:.2f} KiB, Pss {pss:.2f} KiB "
                   f"({'within' if max(rss, pss) <= RSS_BUDGET_KIB else 'OVER'}); the "
                   f"workers' fixed memory before any connection: RSS {_mib(b.rss_kib)}, "
                   f"Pss {_mib(b.pss_kib)}")
        out.append(f"- kernel, both ends: Slab +{per_conn(a.slab_kib, b.slab_kib, held):.2f} "
                   f"KiB/conn (SUnreclaim +{per_conn(a.sunreclaim_kib, b.sunreclaim_kib, held):.2f}"
                   f"), TCP buffer pages {per_conn(a.tcp_mem_kib, b.tcp_mem_kib, held):+.2f} "
                   f"KiB/conn; slab caches grown most, per connection: "
                   f"{top_slab_growth(b, a, held) or 'unreadable'}")
        out.append(f"- client processes: RSS +{per_conn(a.clients_rss_kib, b.clients_rss_kib, held):.2f}"
                   f" KiB/conn; MemAvailable {_mib(b.available_kib)} → {_mib(a.available_kib)}")
    if run.idle and run.held_light:
        ratios = [(_p99(run.held_light, i) / _p99(run.idle, i)) if _p99(run.idle, i) else 0.0
                  for i in range(2)]
        ok = all(r <= P99_BUDGET for r in ratios)
        out.append(f"- budget: p99 while held ≤ {P99_BUDGET:g}× of none held → /hello "
                   f"{ratios[0]:.2f}×, /api {ratios[1]:.2f}× ({'within' if ok else 'OVER'})")
    out.append(f"- gateway CPU with no traffic: {run.cpu_none:.1f}% of one CPU with none held, "
               f"{run.cpu_held:.1f}% with {held:,} held (supervisor + workers over 5 s)")
    out.append(f"- after the hold: {run.held_end:,} still held, {run.lost:,} closed by the "
               f"gateway meanwhile; gateway {'alive' if run.gateway_alive else 'NOT alive'} "
               "with all workers")
    if run.stopped:
        out.append(f"- stopped short: {run.stopped}")
    return out
