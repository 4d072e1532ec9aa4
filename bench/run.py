"""wxgated against nginx: one command, bounded in time (see bench/README.md).

    .venv/bin/python bench/run.py            # 5 rounds x 10 s, ~6 min, appends RESULTS.md
    .venv/bin/python bench/run.py --quick    # 3 rounds x 3 s, < 2 min, prints only

Starts an nginx upstream, nginx as the reference proxy, redis-server and wxgated (bench
configs gateway-bare.yaml / gateway-full.yaml), then loads each proxy with wrk in rounds
interleaved A B C A B C, and reports medians and ratios to nginx from the same rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import report  # noqa: E402
from benchlib.procs import cpu_ticks, stop_all  # noqa: E402
from benchlib.services import (  # noqa: E402
    BENCH,
    REPO,
    get,
    install,
    install_hint,
    missing_tools,
    python,
)
from benchlib.stack import Scenario, setup  # noqa: E402
from benchlib.wrk import run_wrk  # noqa: E402

BASE = ("nginx", "floor", "bare", "full", "redis", "aggregate", "post")
LABELS = {
    "nginx": "nginx (1 worker)",
    "floor": "python floor (bench/floor.py: no features)",
    "bare": "wxgated bare",
    "full": "wxgated full",
    "redis": "wxgated redis",
    "aggregate": "wxgated aggregate (2 calls)",
    "nginx-post": "nginx, POST with a 90-byte JSON body",
    "post": "wxgated bare, the same POST (× nginx POST)",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 rounds x 3 s; no RESULTS.md entry")
    p.add_argument("--rounds", type=int, help="rounds (default 5, quick 3)")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 10, quick 3)")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--only", help="comma list of scenarios (nginx always runs): "
                   + ",".join(BASE) + ",bare-wN")
    p.add_argument("--workers", default="2",
                   help="server.workers counts for the scaling scenarios bare-wN (default 2)")
    p.add_argument("--no-scaling", action="store_true", help="no bare-wN scenarios")
    p.add_argument("--append", dest="append", action="store_true", default=None,
                   help="append to bench/RESULTS.md (default unless --quick)")
    p.add_argument("--no-append", dest="append", action="store_false")
    p.add_argument("--install", action="store_true",
                   help="apt-get install missing nginx/wrk/redis (root only)")
    p.add_argument("--baseline", metavar="REF",
                   help="also run bare, post, full, redis and aggregate as of git REF, interleaved in the same "
                        "rounds (an A/B of a change; no RESULTS.md entry unless --append)")
    p.add_argument("--interpreted", action="store_true",
                   help="also run bare, post, full, redis and aggregate of this tree interpreted "
                        "(WXGATED_NO_EXTENSIONS=1), interleaved in the same rounds")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, confs)")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    if args.append is None:
        args.append = not args.quick and not args.baseline
    counts = [] if args.no_scaling else [int(n) for n in args.workers.split(",") if n]
    order = [*BASE, *(f"bare-w{n}" for n in counts if n > 1)]
    wanted = set(order if not args.only else ["nginx", *args.only.split(",")])
    args.wanted = [n for n in order if n in wanted]
    LABELS.update({f"bare-w{n}": f"wxgated bare, workers: {n}" for n in counts})
    return args


def ensure_tools(args: argparse.Namespace) -> bool:
    missing = missing_tools()
    if missing and args.install and os.geteuid() == 0:
        install(missing)
        missing = missing_tools()
    if "nginx" in missing or "wrk" in missing:
        print(f"missing: {', '.join(missing)}. Install with:\n  {install_hint(missing)}"
              "\n(or rerun as root with --install)", file=sys.stderr)
        return False
    if missing:
        print(f"redis-server missing: the redis scenario is skipped ({install_hint(missing)})",
              file=sys.stderr)
    return True


def measure_once(sc: Scenario, rnd: int, duration: float, conns: int) -> report.Sample:
    pids = sc.service.pids()
    u0, s0 = cpu_ticks(pids)
    res = run_wrk(sc.url, duration, sc.load_cpus, conns, headers=sc.headers, script=sc.script)
    u1, s1 = cpu_ticks(pids)
    for hook in sc.after_round:
        hook()
    return report.Sample(sc.name, rnd, res.requests, res.rps, res.p50_ms, res.p99_ms,
                         u1 - u0, s1 - s0, res.non2xx + res.socket_errors)


def measure(scenarios: list[Scenario], args: argparse.Namespace) -> list[report.Sample]:
    warm = 1.0 if args.quick else 2.0
    for sc in scenarios:
        run_wrk(sc.url, warm, sc.load_cpus, args.connections, headers=sc.headers,
                script=sc.script)
        for hook in sc.after_round:
            hook()
    samples = []
    for rnd in range(1, args.rounds + 1):
        for sc in scenarios:
            s = measure_once(sc, rnd, args.duration, args.connections)
            samples.append(s)
            print(f"round {rnd} {sc.name:10s} {s.rps:9,.0f} req/s  p50 {s.p50_ms:6.2f} ms  "
                  f"p99 {s.p99_ms:7.2f} ms  {s.cpu_us:6.1f} µs/req  errors {s.errors}",
                  flush=True)
    return samples


def scaling_note(rows: list[report.Summary]) -> list[str]:
    by = {r.scenario: r for r in rows}
    a = by.get("bare")
    out = []
    for name, b in by.items():
        if a is not None and name.startswith("bare-w"):
            out.append(f"worker scaling (bare): workers 1 → {name[6:]}: {a.rps:,.0f} → "
                       f"{b.rps:,.0f} req/s (×{b.rps / a.rps:.2f}), CPU µs/req "
                       f"{a.cpu_us:.1f} → {b.cpu_us:.1f}")
    return out


def degraded(scenarios: list[Scenario]) -> list[str]:
    """Rate-limit decisions made without Redis would flatter the redis figure: say so."""
    sc = next((s for s in scenarios if s.name == "redis"), None)
    if sc is None:
        return []
    _, body = get(f"http://127.0.0.1:{sc.service.admin_port}/metrics")
    total = sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                if line.startswith("wxgated_ratelimit_degraded_total{"))
    return [f"redis: {total:.0f} rate-limit decisions made without Redis (degraded) "
            "over the whole run, warm-up included"]


def method_text(args: argparse.Namespace, scenarios: list[Scenario]) -> str:
    order = " ".join(sc.name for sc in scenarios)
    return (f"Method: `wrk -t1 -c{args.connections}`, {args.duration:g} s per run, "
            f"{args.rounds} rounds interleaved ({order}), medians. CPU µs/req = utime+stime "
            "of the proxy's process tree (/proc) over the wrk window ÷ requests completed "
            "(sys share in brackets); ×nginx = median of the per-round ratios to nginx.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not ensure_tools(args):
        return 2
    n = len(args.wanted) + ("post" in args.wanted)  # post brings nginx-post
    print(f"~{(args.rounds * n * (args.duration + 0.3) + n * 5 + 10) / 60:.1f} min: "
          f"{args.rounds} rounds × {len(args.wanted)} scenarios × {args.duration:g} s",
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="wxgated-bench-"))
    notes: list[str] = []
    try:
        scenarios = setup(args.wanted, tmp, notes, args.baseline, args.interpreted)
        for note in notes:
            print(note, flush=True)
        samples = measure(scenarios, args)
        notes += degraded(scenarios)
    finally:
        stop_all()
        if args.keep_tmp:
            print(f"logs and configs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = report.summarize(samples)
    notes += scaling_note(rows)
    info = report.machine(python(), REPO)
    title = "quick run" if args.quick else "full run"
    text = report.entry(title, info, method_text(args, scenarios), rows, LABELS, notes)
    print("\n" + text)
    if args.append:
        report.append(BENCH / "RESULTS.md", text)
        print(f"appended to {BENCH / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
