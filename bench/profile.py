"""Where a request's CPU goes: py-spy against wxgated under wrk load, folded by stage.

    .venv/bin/python bench/profile.py                      # bare and full, 15 s each
    .venv/bin/python bench/profile.py --scenarios bare,full,redis,aggregate --out prof.md

Same processes, pinning and load as bench/run.py. py-spy samples the gateway (without
pausing it, --nonblocking) while wrk runs; the gateway's CPU over the same window gives
µs/req, and each stage's share of the samples splits it (benchlib/stages.py says how
frames map to stages). Needs py-spy in the venv: .venv/bin/pip install py-spy
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.procs import TICK, cpu_ticks, pinned, stop_all  # noqa: E402
from benchlib.services import python  # noqa: E402
from benchlib.stack import Scenario, setup  # noqa: E402
from benchlib.stages import fold, render  # noqa: E402
from benchlib.wrk import run_wrk  # noqa: E402


def py_spy() -> str | None:
    here = Path(python()).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def profile_one(sc: Scenario, spy: str, duration: float, rate: int, raw: Path) -> str:
    run_wrk(sc.url, 2.0, sc.load_cpus, headers=sc.headers, script=sc.script)  # warm caches and pools
    rec = subprocess.Popen(
        pinned([spy, "record", "--pid", str(sc.service.proc.pid), "--duration",
                f"{duration:g}", "--rate", str(rate), "--format", "raw", "--nonblocking",
                "--output", str(raw)], sc.load_cpus),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = sc.service.pids()
    u0, s0 = cpu_ticks(pids)
    res = run_wrk(sc.url, duration, sc.load_cpus, headers=sc.headers, script=sc.script)
    u1, s1 = cpu_ticks(pids)
    rec.wait(duration + 30)
    for hook in sc.after_round:
        hook()
    cpu_us = (u1 - u0 + s1 - s0) * 1e6 / TICK / max(res.requests, 1)
    sys_us = (s1 - s0) * 1e6 / TICK / max(res.requests, 1)
    stages, leaves, inclusive = fold(raw.read_text())
    head = (f"{res.rps:,.0f} req/s under py-spy (--rate {rate}); CPU {cpu_us:.1f} µs/req, "
            f"of which kernel (sys) {sys_us:.1f}\n\n")
    return head + render(sc.name, stages, leaves, inclusive, cpu_us)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default="bare,full")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--out", type=Path, help="also write the report (markdown) here")
    p.add_argument("--raw-dir", type=Path, help="keep py-spy's raw stacks here")
    args = p.parse_args(argv)
    spy = py_spy()
    if spy is None:
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    wanted = ["nginx", *args.scenarios.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="wxgated-profile-"))
    raw_dir = args.raw_dir or tmp
    raw_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    parts = []
    try:
        for sc in setup(wanted, tmp, notes):
            if sc.name != "nginx":
                parts.append(profile_one(sc, spy, args.duration, args.rate,
                                         raw_dir / f"{sc.name}.raw"))
                print(parts[-1], flush=True)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    for note in notes:
        print(note)
    if args.out:
        args.out.write_text("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
