"""The bench's process set: which proxies run, on which CPUs, and the URL and headers
each scenario loads. Shared by run.py, profile.py and idle_conns.py."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchlib.procs import CpuPlan, free_port, stop
from benchlib.services import (
    BENCH,
    REPO,
    Service,
    checkout,
    get,
    login,
    missing_tools,
    python,
    start_floor,
    start_gateway,
    start_nginx,
    start_redis,
)


@dataclass
class Scenario:
    name: str
    service: Service
    path: str
    load_cpus: str | None
    headers: tuple[str, ...] = ()
    after_round: list[Callable[[], None]] = field(default_factory=list)
    script: str | None = None  # a wrk Lua script (bench/post.lua)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}{self.path}"


def config_ok(config: str) -> str | None:
    """None when `wxgated check` accepts the bench config, else its complaint."""
    out = subprocess.run([python(), "-m", "wxgated", "check", "-c", str(BENCH / config)],
                         capture_output=True, text=True, cwd=REPO)
    return None if out.returncode == 0 else (out.stderr or out.stdout).strip()


def probe(sc: Scenario) -> str | None:
    """None when one request through the scenario answers 200, else why not."""
    hdrs = dict(h.split(": ", 1) for h in sc.headers)
    status, body = get(sc.url, hdrs)
    return None if status == 200 else f"probe answered {status}: {body[:200]!r}"


def start_core(wanted: list[str], tmp: Path, plan: CpuPlan) -> tuple[list[Scenario], int]:
    """The upstream, nginx and the bare gateway (always there)."""
    up_port = free_port()
    start_nginx("upstream", "upstream.conf", tmp, plan.load, {"UPSTREAM_PORT": up_port})
    proxy = start_nginx("proxy", "proxy.conf", tmp, plan.proxy,
                        {"UPSTREAM_PORT": up_port, "PROXY_PORT": free_port()})
    out = [Scenario("nginx", proxy, "/bare/items/42", plan.load)]
    if "post" in wanted:  # `post` is compared with nginx proxying the same POST
        out.append(Scenario("nginx-post", proxy, "/bare/items/42", plan.load,
                            script=POST_SCRIPT))
    if "floor" in wanted:
        out.append(Scenario("floor", start_floor(tmp, plan.proxy, up_port), "/bare/items/42",
                            plan.load))
    return out + _bare_gateway(wanted, tmp, plan, up_port), up_port


def _bare_gateway(wanted: list[str], tmp: Path, plan: CpuPlan, up_port: int,
                  tree: Path | None = None, suffix: str = "",
                  env: dict[str, str | int] | None = None) -> list[Scenario]:
    """bare and post: one gateway on gateway-bare.yaml (from `tree` when given)."""
    names = [n for n in ("bare", "post") if n in wanted]
    if not names:
        return []
    gw = start_gateway("bare" + suffix, "gateway-bare.yaml", tmp, plan.proxy,
                       {"BENCH_UPSTREAM_PORT": up_port, "BENCH_WORKERS": 1, **(env or {})},
                       tree)
    return [Scenario(n + suffix, gw, "/bare/items/42", plan.load,
                     script=POST_SCRIPT if n == "post" else None) for n in names]


POST_SCRIPT = str(BENCH / "post.lua")
PATHS = {"full": "/full/items/42", "redis": "/redis/items/42", "aggregate": "/aggregate"}


def start_full(wanted: list[str], tmp: Path, plan: CpuPlan, up_port: int,
               notes: list[str]) -> tuple[list[Scenario], int]:
    """full / redis / aggregate: one gateway, a real login for the JWT. Also returns
    the Redis port (nothing listens there when the redis scenario is not wanted)."""
    names = [n for n in ("full", "redis", "aggregate") if n in wanted]
    redis_port = free_port()
    if not names:
        return [], redis_port
    problem = config_ok("gateway-full.yaml")
    if problem:
        notes.append(f"skipped {', '.join(names)}: wxgated check says: {problem}")
        return [], redis_port
    if "redis" in names:
        if missing_tools(("redis-server",)):
            names.remove("redis")
            notes.append("skipped redis: redis-server not installed")
        else:
            redis_port = start_redis(tmp, plan.load).port
    return _full_gateway("full", names, tmp, plan, up_port, redis_port), redis_port


def _full_gateway(name: str, scenarios: list[str], tmp: Path, plan: CpuPlan, up_port: int,
                  redis_port: int, tree: Path | None = None, suffix: str = "",
                  env: dict[str, str | int] | None = None) -> list[Scenario]:
    gw = start_gateway(name, "gateway-full.yaml", tmp, plan.proxy,
                       {"BENCH_UPSTREAM_PORT": up_port, "BENCH_REDIS_PORT": redis_port,
                        **(env or {})}, tree)
    token = login(f"http://127.0.0.1:{gw.port}")
    auth = (f"Authorization: Bearer {token}",)
    access = gw.stdout
    assert access is not None
    truncate = [lambda: os.truncate(access, 0)]
    return [Scenario(n + suffix, gw, PATHS[n], plan.load, auth, truncate) for n in scenarios]


def start_scaling(tmp: Path, up_port: int, notes: list[str], workers: int) -> list[Scenario]:
    """bare with server.workers: N, on N proxy CPUs when the host has N+1 (the load
    needs one); on a smaller host the workers share CPUs with the load (noted)."""
    name = f"bare-w{workers}"
    plan = CpuPlan.detect(proxy_cores=workers)
    gw = start_gateway(name, "gateway-bare.yaml", tmp, plan.proxy,
                       {"BENCH_UPSTREAM_PORT": up_port, "BENCH_WORKERS": workers})
    time.sleep(1.0)  # let the workers come up
    procs = len(gw.pids())
    if procs < 2:
        stop(gw.proc)
        notes.append(f"skipped {name}: `workers: {workers}` still runs one process in this "
                     "build (the multi-worker supervisor is not wired into `wxgated run`)")
        return []
    notes.append(f"{name}: {procs} processes (supervisor + workers); {plan.note}")
    return [Scenario(name, gw, "/bare/items/42", plan.load)]


def start_baseline(ref: str, wanted: list[str], tmp: Path, plan: CpuPlan, up_port: int,
                   redis_port: int) -> list[Scenario]:
    """bare, post, full, redis and aggregate as they were at git `ref`, named `bare@REF`
    and so on: an A/B of a change in the same rounds, where the VM's drift between runs
    can't hide it."""
    tree = checkout(ref, tmp)
    out = _bare_gateway(wanted, tmp, plan, up_port, tree, f"@{ref}")
    names = [n for n in ("full", "redis", "aggregate") if n in wanted]
    if names:
        out += _full_gateway(f"full@{ref}", names, tmp, plan, up_port, redis_port, tree,
                             f"@{ref}")
    return out


INTERPRETED = "@interpreted"


def start_interpreted(wanted: list[str], tmp: Path, plan: CpuPlan, up_port: int,
                      redis_port: int) -> list[Scenario]:
    """This tree's gateways again with WXGATED_NO_EXTENSIONS=1 (`bare@interpreted`...):
    the compiled build against the same sources interpreted, in the same rounds."""
    env: dict[str, str | int] = {"WXGATED_NO_EXTENSIONS": 1}
    out = _bare_gateway(wanted, tmp, plan, up_port, None, INTERPRETED, env)
    names = [n for n in ("full", "redis", "aggregate") if n in wanted]
    if names:
        out += _full_gateway("full" + INTERPRETED, names, tmp, plan, up_port, redis_port,
                             None, INTERPRETED, env)
    return out


def setup(wanted: list[str], tmp: Path, notes: list[str],
          baseline: str | None = None, interpreted: bool = False) -> list[Scenario]:
    """Start what `wanted` needs; scenarios whose probe request fails are left out
    (with a note), so a half-finished build still benches what works."""
    plan = CpuPlan.detect()
    notes.append(f"pinning: {plan.note}")
    scenarios, up_port = start_core(wanted, tmp, plan)
    full, redis_port = start_full(wanted, tmp, plan, up_port, notes)
    scenarios += full
    others = []
    if baseline is not None:
        others += start_baseline(baseline, wanted, tmp, plan, up_port, redis_port)
    if interpreted:
        others += start_interpreted(wanted, tmp, plan, up_port, redis_port)
    if others:  # each right after its counterpart in the rounds
        for sc in others:
            at = next(i for i, s in enumerate(scenarios) if s.name == sc.name.split("@")[0])
            scenarios.insert(at + 1, sc)
    for name in wanted:
        if name.startswith("bare-w"):
            scenarios += start_scaling(tmp, up_port, notes, int(name[6:]))
    ready = []
    for sc in scenarios:
        problem = probe(sc)
        if problem:
            notes.append(f"skipped {sc.name}: {problem}")
        else:
            ready.append(sc)
    return ready
