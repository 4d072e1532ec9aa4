"""Connection scale to a million: idle keep-alive client connections held by a
multi-worker gateway, measured (bench/README.md, "A million connections").

    .venv/bin/python bench/connections.py --connections 10000 --no-append   # a check
    .venv/bin/python bench/connections.py --connections 1000000 --ramp 100000

Starts nginx (the upstream) and `wxgated run` on bench/gateway-conns.yaml with enough
workers that none needs more fds than one process may have, then client processes
(bench/benchlib/holder.py, plain epoll loops, one fd and no Python object per held
connection) that open the connections in ramps from many 127.x.y.z source addresses.
Every connection is answered once (`GET /hello`) before it is held, so the gateway has
parsed a request on it. Reported: the accept rate of each ramp, the gateway's memory
(VmRSS and Pss over supervisor + workers) and the kernel's (sockstat TCP pages, Slab,
SUnreclaim) per connection, and the latency of light fixed-rate traffic
(bench/benchlib/light.py) before, while connecting and while they are held.
Everything started is stopped at the end, and sysctls raised by `--tune` are restored.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import report  # noqa: E402
from benchlib.conntable import Ramp, Run, render  # noqa: E402
from benchlib.limits import (  # noqa: E402
    Plan,
    Sysctls,
    meminfo_kib,
    memory_needed_kib,
    raise_nofile,
    read_sysctl,
    shortfalls,
)
from benchlib.memory import Memory  # noqa: E402
from benchlib.procs import TICK, cpu_ticks, free_port, stop_all, tree_pids  # noqa: E402
from benchlib.services import (  # noqa: E402
    BENCH,
    REPO,
    Service,
    python,
    start_gateway,
    start_nginx,
)

HOLDER = BENCH / "benchlib" / "holder.py"
LIGHT = BENCH / "benchlib" / "light.py"
IDLE_PATH = "/hello"
LIGHT_PATHS = ("/hello", "/api/items/42")  # the respond: route and the upstream: route
MIN_AVAILABLE_KIB = 1536 * 1024  # stop ramping before the machine runs out of memory
MAX_PROCESSES = 200  # gateway workers or clients: past this the fd limit is the problem


class Clients:
    """The holder processes, driven over their stdin/stdout."""

    def __init__(self, port: int, plan: Plan, concurrency: int, log: Path) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        err = open(log, "a")
        for i in range(plan.clients):
            sources = ",".join(plan.sources[i::plan.clients])
            self.procs.append(subprocess.Popen(
                [python(), str(HOLDER), str(port), IDLE_PATH, sources, str(concurrency)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                start_new_session=True))

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def ask(self, commands: list[str]) -> list[dict[str, object]]:
        """Send each client its command at once, then collect the answers: they work
        in parallel."""
        for proc, cmd in zip(self.procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(cmd + "\n")
            proc.stdin.flush()
        out = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"client {proc.pid} exited ({proc.poll()})")
            out.append(json.loads(line))
        return out

    def close(self) -> int:
        closed = 0
        try:
            closed = sum(int(r.get("closed", 0)) for r in  # type: ignore[call-overload]
                         self.ask(["close"] * len(self.procs)))
        except (OSError, RuntimeError, ValueError):
            pass
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return closed


def light(port: int, args: argparse.Namespace, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen([python(), str(LIGHT), str(port), str(args.rate), str(seconds),
                             str(args.light_conns), *LIGHT_PATHS],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)


def light_result(proc: subprocess.Popen[str], stop: bool = False) -> dict[str, object]:
    if stop:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    return json.loads(out)


def wait_workers(admin: int, workers: int, timeout: float) -> None:
    """Every worker serving (the supervisor's count), not only the first."""
    deadline = time.monotonic() + timeout
    serving = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/-/status.json",
                                        timeout=5) as r:
                serving = json.loads(r.read())["workers"]["serving"]
            if serving >= workers:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{serving} of {workers} workers serving after {timeout:g} s")


def ramps(target: int, step: int) -> list[int]:
    """Cumulative totals: step, 2·step, …, target."""
    step = max(1, min(step, target))
    return [*range(step, target, step), target]


def shares(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def hold(args: argparse.Namespace, run: Run, gw_pids: list[int], clients: Clients,
         port: int) -> None:
    """Open the connections ramp by ramp, light traffic running all along."""
    run.before = Memory.read(gw_pids, clients.pids())
    during = light(port, args, 24 * 3600)
    held = 0
    try:
        for total in ramps(args.connections, args.ramp):
            why = _out_of_memory(run, total - held)
            if why:
                run.stopped = why
                break
            t0, asked = time.monotonic(), total - held
            answers = clients.ask([f"open {k}" for k in shares(asked, len(clients.procs))])
            seconds = time.monotonic() - t0
            opened = sum(int(a["opened"]) for a in answers)  # type: ignore[call-overload]
            failed = sum(int(a["failed"]) for a in answers)  # type: ignore[call-overload]
            errors = [str(a["error"]) for a in answers if a["error"]]
            held = sum(int(a["held"]) for a in answers)  # type: ignore[call-overload]
            mem = Memory.read(gw_pids, clients.pids())
            run.ramps.append(Ramp(held, opened, failed, seconds, mem))
            print(f"{held:,} held (+{opened:,} in {seconds:.1f} s, {opened / seconds:,.0f}/s, "
                  f"{failed} failed); gateway RSS {mem.rss_kib / 1048576:.2f} GiB, "
                  f"MemAvailable {mem.available_kib / 1048576:.1f} GiB", flush=True)
            if errors:
                run.notes.append(f"ramp to {total:,}: {failed:,} failed, first: {errors[0]}")
            why = _stop_reason(mem, failed, asked)
            if why:
                run.stopped = why
                break
    finally:
        run.during = light_result(during, stop=True)


def _out_of_memory(run: Run, more: int) -> str:
    """Why the next ramp must not start: it would leave the machine (gateway, kernel and
    clients together, as MemAvailable fell so far) under MIN_AVAILABLE_KIB."""
    if not run.ramps or run.before is None:
        return ""
    last = run.ramps[-1]
    per = (run.before.available_kib - last.mem.available_kib) / max(last.held, 1)
    left = last.mem.available_kib - more * per * 1.1
    if left >= MIN_AVAILABLE_KIB:
        return ""
    return (f"memory: MemAvailable {last.mem.available_kib / 1048576:.1f} GiB with "
            f"{last.held:,} held, falling {per:.1f} KiB per connection; {more:,} more would "
            f"leave {max(left, 0) / 1048576:.1f} GiB (the script keeps "
            f"{MIN_AVAILABLE_KIB / 1048576:.1f} GiB free)")


def _stop_reason(mem: Memory, failed: int, asked: int) -> str:
    if mem.available_kib < MIN_AVAILABLE_KIB:
        return (f"MemAvailable down to {mem.available_kib / 1048576:.1f} GiB: stopped "
                "before the machine runs out of memory")
    if failed > max(10, asked // 100):
        return f"{failed:,} of {asked:,} connections failed in the last ramp"
    return ""


def measure(args: argparse.Namespace, sysctls: Sysctls) -> Run:
    nofile, note = raise_nofile()
    plan = Plan.make(args.connections, nofile, args.workers, args.clients, args.per_source)
    run = Run(plan=plan, nofile=nofile, light=f"{args.rate:g} requests/s over "
              f"{args.light_conns} connections, {args.duration:g} s before and while held")
    if note:
        run.notes.append(note + f": {plan.workers} gateway workers and {plan.clients} client "
                         f"processes, each under {nofile:,} fds")
    _check(args, plan, run, sysctls)
    print(f"plan: {plan.connections:,} connections, {plan.workers} gateway workers "
          f"(max_connections {plan.per_worker_max:,}), {plan.clients} client processes, "
          f"{len(plan.sources):,} source addresses; RLIMIT_NOFILE {nofile:,}; "
          f"about {memory_needed_kib(plan) / 1048576:.1f} GiB of memory", flush=True)
    if note:
        print(note, flush=True)
    if args.dry_run:
        raise SystemExit(0)
    tmp = Path(tempfile.mkdtemp(prefix="wxgated-conns-"))
    clients: Clients | None = None
    try:
        gw = _serve(plan, run, tmp)
        clients = Clients(gw.port, plan, args.concurrency, tmp / "clients.log")
        gw_pids = gw.pids()
        quiet(gw_pids, run, "started")
        run.cpu_none = cpu_share(gw_pids, 5.0)
        run.idle = light_result(light(gw.port, args, args.duration))
        hold(args, run, gw_pids, clients, gw.port)
        quiet(gw_pids, run, "done with the last ramp")
        run.after = Memory.read(gw_pids, clients.pids())
        run.cpu_held = cpu_share(gw_pids, 5.0)
        run.held_light = light_result(light(gw.port, args, args.duration))
        status = clients.ask(["status"] * len(clients.procs))
        run.held_end = sum(int(s["held"]) for s in status)  # type: ignore[call-overload]
        run.lost = sum(int(s["lost"]) for s in status)  # type: ignore[call-overload]
        run.gateway_alive = gw.proc.poll() is None and len(tree_pids(gw.proc.pid)) > plan.workers
        t0 = time.monotonic()
        run.closed = clients.close()
        clients = None
        run.notes.append(f"closing {run.closed:,} connections took {time.monotonic() - t0:.1f} s")
        quiet(gw_pids, run, "done closing them")
        run.after_light = light_result(light(gw.port, args, args.duration))  # the drift
    finally:
        if clients is not None:
            clients.close()
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return run


def cpu_share(pids: list[int], seconds: float) -> float:
    """CPU the processes used over `seconds`, in % of one CPU."""
    u0, s0 = cpu_ticks(pids)
    time.sleep(seconds)
    u1, s1 = cpu_ticks(pids)
    return (u1 + s1 - u0 - s0) * 100 / TICK / seconds


def quiet(pids: list[int], run: Run, what: str, below: float = 10.0,
          timeout: float = 300.0) -> None:
    """Wait until the gateway is idle (< `below` % of a CPU over a second): tearing
    down a million connections, or GC after a ramp, keeps the workers busy for tens of
    seconds after the clients are done, and latency measured then is theirs."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and cpu_share(pids, 1.0) >= below:
        pass
    run.notes.append(f"gateway quiet (< {below:g}% of a CPU) {time.monotonic() - t0:.0f} s "
                     f"after it was {what}")


def _serve(plan: Plan, run: Run, tmp: Path) -> Service:
    """nginx and the gateway, once every worker serves (55 interpreters starting on two
    CPUs take a minute or two)."""
    up = free_port()
    start_nginx("upstream", "upstream.conf", tmp, None, {"UPSTREAM_PORT": up})
    t0 = time.monotonic()
    text = re.sub(r"max_connections: \d+", f"max_connections: {plan.per_worker_max}",
                  (BENCH / "gateway-conns.yaml").read_text())
    gw = start_gateway("conns", "gateway-conns.yaml", tmp, None,
                       {"BENCH_UPSTREAM_PORT": up, "BENCH_WORKERS": plan.workers},
                       config_text=text, ready_timeout=600)
    wait_workers(gw.admin_port, plan.workers, 600)
    run.notes.append(f"{plan.workers} workers serving after {time.monotonic() - t0:.0f} s")
    return gw


def _check(args: argparse.Namespace, plan: Plan, run: Run, sysctls: Sysctls) -> None:
    """Refuse to start (exit 2) when the machine can't take the run, saying what it needs."""
    short = shortfalls(plan)
    if short and args.tune and not args.dry_run:
        failed = sysctls.raise_to(short)
        run.notes += [f"raised {k} to {v:,} for the run (restored after)" for k, v in
                      short.items() if k not in failed]
        short = {k: v for k, v in short.items() if k in failed}
    problems = [f"sysctl {k} is {read_sysctl(k)}; this run needs ≥ {v:,} (sysctl -w {k}={v}, "
                "or --tune)" for k, v in short.items()]
    need, have = memory_needed_kib(plan), meminfo_kib("MemAvailable")
    if need > have * 0.9 and not args.force:
        problems.append(f"about {need / 1048576:.1f} GiB of memory needed, "
                        f"{have / 1048576:.1f} GiB available (--force to try anyway)")
    if plan.workers > MAX_PROCESSES or plan.clients > MAX_PROCESSES:
        problems.append(f"RLIMIT_NOFILE {run.nofile:,} would take {plan.workers} workers and "
                        f"{plan.clients} clients: raise the hard limit (ulimit -Hn, as root "
                        "with CAP_SYS_RESOURCE) or ask for fewer --connections")
    if problems:
        print("cannot run:\n- " + "\n- ".join(problems), file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=1_000_000, help="how many to hold")
    p.add_argument("--ramp", type=int, default=100_000, help="connections opened per ramp")
    p.add_argument("--clients", type=int, default=0,
                   help="client processes (default: as few as the fd limit allows)")
    p.add_argument("--workers", type=int, default=0,
                   help="gateway workers (default: as few as the fd limit allows, ≥ 2)")
    p.add_argument("--concurrency", type=int, default=64,
                   help="connections each client has connecting at a time")
    p.add_argument("--per-source", type=int, default=10_000,
                   help="connections per source address (ephemeral ports per address)")
    p.add_argument("--rate", type=float, default=200.0, help="light traffic, requests/s")
    p.add_argument("--light-conns", type=int, default=8, help="light traffic connections")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds of light traffic before and while held")
    p.add_argument("--tune", action="store_true",
                   help="raise sysctls the run needs (restored at the end)")
    p.add_argument("--force", action="store_true", help="skip the memory estimate check")
    p.add_argument("--no-append", action="store_true", help="don't write bench/RESULTS.md")
    p.add_argument("--dry-run", action="store_true",
                   help="check the machine and print the plan, start nothing")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sysctls = Sysctls()
    try:
        run = measure(args, sysctls)
    finally:
        sysctls.restore()
    text = render(run, report.machine(python(), REPO), " ".join(["bench/connections.py",
                                                                *(argv or sys.argv[1:])]))
    print("\n" + text)
    if not args.no_append:
        report.append(BENCH / "RESULTS.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
