"""Connection scale: RSS per idle keep-alive connection, and p99 of light traffic while
one wxgated worker holds 10k and then 50k of them (bench/README.md).

    .venv/bin/python bench/idle_conns.py                 # 10k then 50k, ~1-2 min
    .venv/bin/python bench/idle_conns.py --steps 2000,5000 --no-append

The client is this process: raw non-blocking sockets on one asyncio loop, each bound to
one of several 127.0.0.x source addresses (IP_BIND_ADDRESS_NO_PORT, so each address has
its own ephemeral port range), each sending one request so the gateway holds a real
keep-alive connection that has served a request. RLIMIT_NOFILE is raised for this
process and the gateway (as root the hard limit can go up too). Every socket is closed
and every child stopped on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import report  # noqa: E402
from benchlib.procs import CpuPlan, free_port, rss_kib, stop_all  # noqa: E402
from benchlib.services import BENCH, REPO, python, start_gateway, start_nginx  # noqa: E402
from benchlib.wrk import WrkResult, run_wrk  # noqa: E402

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
REQUEST = b"GET /bare/idle HTTP/1.1\r\nHost: bench\r\n\r\n"
PER_SOURCE = 5_000  # connect() finds free ports slowly once a range fills up


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Holder:
    """Opens keep-alive connections from rotating 127.0.0.x addresses and keeps them."""

    def __init__(self, port: int, total: int) -> None:
        self.port = port
        n = max(1, -(-total // PER_SOURCE))
        self.sources = [f"127.0.0.{2 + i}" for i in range(n)]
        self.socks: list[socket.socket] = []
        self.errors = 0
        self.first_error = ""

    async def open(self, count: int, concurrency: int = 200) -> None:
        sem = asyncio.Semaphore(concurrency)
        start = len(self.socks)

        async def one(i: int) -> None:
            async with sem:
                await self._one(self.sources[(start + i) % len(self.sources)])

        await asyncio.gather(*(one(i) for i in range(count)))

    async def _one(self, source: str) -> None:
        loop = asyncio.get_running_loop()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setblocking(False)
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((source, 0))
            await loop.sock_connect(s, ("127.0.0.1", self.port))
            await loop.sock_sendall(s, REQUEST)
            head = await asyncio.wait_for(loop.sock_recv(s, 4096), 30)
            if not head.startswith(b"HTTP/1.1 200"):
                raise OSError(f"answer {head[:40]!r}")
        except (OSError, TimeoutError) as exc:
            s.close()
            self.errors += 1
            self.first_error = self.first_error or repr(exc)
            return
        self.socks.append(s)

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks.clear()


def fit_steps(steps: list[int], limit: int, notes: list[str]) -> list[int]:
    """Steps the fd limit allows (this process and the gateway both hold each
    connection); a step beyond it becomes the largest count that fits, with a note."""
    cap = limit - 500
    out = sorted({min(s, cap) for s in steps if cap > 0})
    if any(s > cap for s in steps):
        notes.append(f"RLIMIT_NOFILE hard limit here is {limit} and cannot be raised (no "
                     f"CAP_SYS_RESOURCE): steps above {cap:,} ran as {cap:,}; on a host "
                     "where root may raise it, the script goes to the full count")
    return out


@dataclass(frozen=True)
class Step:
    held: int
    rss_kib: int
    load: WrkResult


def measure(url: str, pids: list[int], held: int, duration: float,
            cpus: str | None) -> Step:
    time.sleep(1.0)  # let the gateway settle (timers, GC) before reading RSS
    rss = rss_kib(pids)
    return Step(held, rss, run_wrk(url, duration, cpus, connections=10))


def render(steps: list[Step], info: dict[str, str], plan: CpuPlan, notes: list[str],
           duration: float) -> str:
    base = steps[0]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {when} — idle keep-alive connections (bench/idle_conns.py)", "",
        f"Machine: {info['cpu']}, {info['nproc']} CPUs, Linux {info['kernel']}; "
        f"{info['python']}; wxgated {info['wxgated']}. Load average at start: {info['load']}.",
        "",
        "Method: one wxgated worker (bench/gateway-idle.yaml); the connections come from one "
        "asyncio client over several 127.0.0.x source addresses, each serving one request "
        f"and then held idle. RSS = VmRSS of the gateway; load = `wrk -t1 -c10 -d{duration:g}s` "
        f"while they are held; {plan.note}.", "",
        "| idle connections | gateway RSS | Δ RSS per connection | req/s (wrk -c10) | p50 ms "
        "| p99 ms | p99 ÷ none held |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        per = "—" if s.held == 0 else f"{(s.rss_kib - base.rss_kib) / s.held:.2f} KiB"
        lines.append(f"| {s.held:,} | {s.rss_kib / 1024:.1f} MiB | {per} | {s.load.rps:,.0f} | "
                     f"{s.load.p50_ms:.2f} | {s.load.p99_ms:.2f} | "
                     f"{s.load.p99_ms / base.load.p99_ms:.2f}× |")
    lines.append("")
    last = steps[-1]
    if last.held:
        per = (last.rss_kib - base.rss_kib) / last.held
        ratio = last.load.p99_ms / base.load.p99_ms
        lines.append(f"- budget: ≤ 10 KiB per idle connection → {per:.2f} KiB "
                     f"({'within' if per <= 10 else 'OVER'}); p99 within 2× of unloaded → "
                     f"{ratio:.2f}× ({'within' if ratio <= 2 else 'OVER'})")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n\n"


async def scale(args: argparse.Namespace, url: str, port: int, pids: list[int],
                cpus: str | None, notes: list[str]) -> list[Step]:
    run_wrk(url, 2.0, cpus, connections=10)  # warm the pool and caches
    steps = [measure(url, pids, 0, args.duration, cpus)]
    holder = Holder(port, max(args.steps))
    try:
        for target in args.steps:
            t0 = time.monotonic()
            await holder.open(target - len(holder.socks))
            notes.append(f"{len(holder.socks):,} held after {time.monotonic() - t0:.1f} s "
                         f"from {len(holder.sources)} source addresses; "
                         f"{holder.errors} failed {holder.first_error}".rstrip())
            if len(holder.socks) < target * 0.99:
                notes.append(f"stopped: only {len(holder.socks):,} of {target:,} opened")
                break
            steps.append(measure(url, pids, len(holder.socks), args.duration, cpus))
            print(f"{len(holder.socks):,} idle: RSS {steps[-1].rss_kib / 1024:.1f} MiB, "
                  f"p99 {steps[-1].load.p99_ms:.2f} ms", flush=True)
    finally:
        holder.close()
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", default="10000,50000", help="cumulative idle connection counts")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of wrk per step")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this long")
    p.add_argument("--no-append", action="store_true", help="don't write bench/RESULTS.md")
    args = p.parse_args(argv)
    args.steps = sorted(int(s) for s in args.steps.split(","))
    notes: list[str] = []
    args.steps = fit_steps(args.steps, raise_nofile(max(args.steps) + 10_000), notes)
    if not args.steps:
        print("\n".join(notes), file=sys.stderr)
        return 2
    plan = CpuPlan.detect()
    if plan.load:
        os.sched_setaffinity(0, {int(c) for c in plan.load.split(",")})
    tmp = Path(tempfile.mkdtemp(prefix="wxgated-idle-"))
    try:
        up = free_port()
        start_nginx("upstream", "upstream.conf", tmp, plan.load, {"UPSTREAM_PORT": up})
        gw = start_gateway("idle", "gateway-idle.yaml", tmp, plan.proxy,
                           {"BENCH_UPSTREAM_PORT": up})
        url = f"http://127.0.0.1:{gw.port}/bare/items/42"
        steps = asyncio.run(asyncio.wait_for(
            scale(args, url, gw.port, gw.pids(), plan.load, notes), args.timeout))
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    text = render(steps, report.machine(python(), REPO), plan, notes, args.duration)
    print("\n" + text)
    if not args.no_append:
        report.append(BENCH / "RESULTS.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
