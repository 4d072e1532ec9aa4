"""CPU of wxgated's own code per proxied request, without sockets or the kernel.

    .venv/bin/python bench/pathcost.py [bench/gateway-full.yaml] [--path /full/x] [-n 20000]

The wrk benchmark (run.py) measures the whole process, where half the time is the
kernel's loopback TCP work and the VM's noise is ±15%. This drives the real objects of
one process (GatewayProtocol, the route's pipeline in the engine, UpstreamConnection,
metrics, access log into /dev/null) with in-memory transports: request bytes go in,
the upstream request comes out, a canned nginx answer goes back in, the client answer
comes out. What it prints is stable to a few percent, so it shows whether a change to
the hot path made it cheaper. The same loop over a minimal callback proxy (the "floor"
of docs/PERFORMANCE.md) is printed alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import uvloop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchlib.stages import Frame, stage_of  # noqa: E402
from floor import FloorPool, FloorServer, FloorUpstream  # noqa: E402

from wxgated.http.client import UpstreamConnection  # noqa: E402
from wxgated.observe.accesslog import AccessLog  # noqa: E402
from wxgated.process.server import Gateway  # noqa: E402

ANSWER = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 08:38:01 GMT"
          b"\r\nContent-Type: application/json\r\nContent-Length: 90\r\n"
          b"Connection: keep-alive\r\n\r\n" + b"x" * 90)


# nginx/upstream.conf's answer to every GET, for the aggregate route (which parses it)
JSON_BODY = b'{"code":0,"user":{"id":42,"name":"bench user","tags":["a","b","c"]},"ok":true,"n":1234567}'
JSON_ANSWER = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 08:38:01 GMT"
               b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
               b"Connection: keep-alive\r\n\r\n%s" % (len(JSON_BODY), JSON_BODY))


class Wire:
    """A transport that keeps what is written."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        self.out: list[bytes] = []
        self.peer = peer

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, parts: list[bytes]) -> None:
        self.out.append(b"".join(parts))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def can_write_eof(self) -> bool:
        return True


POST_BODY = (b'{"openid":"o-bench-user-0001","items":[{"id":42,"qty":1},{"id":7,"qty":3}],'
             b'"note":"bench"}')  # bench/post.lua's


async def gateway_cost(config: str, path: str, n: int, post: bool = False) -> float:
    os.environ["BENCH_PORT"] = "0"  # a listener is bound, never used
    gw = Gateway(config, AccessLog(fd=os.open(os.devnull, os.O_WRONLY)))
    gw.load()
    await gw.start()
    token = await login(gw)
    d = gw.dispatcher
    assert d is not None
    pool = next(iter(gw.snapshot.upstreams.values())).targets[0].pool
    client = Wire()
    proto = d.protocol()
    proto.connection_made(client)
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    request = (f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:18080\r\n{auth}"
               "user-agent: wrk\r\n\r\n").encode()
    if post:  # wrk's POST of bench/post.lua
        request = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:18080\r\n{auth}"
                   "content-type: application/json\r\n"
                   f"content-length: {len(POST_BODY)}\r\n\r\n").encode() + POST_BODY
    try:
        if any(r.terminal == "aggregate" and r.path == path for r in gw.snapshot.routes):
            return await aggregate_cost(pool, proto, client, request, n)
        return await proxy_cost(pool, proto, client, request, n)
    finally:
        await gw.shutdown(0)


def _pooled(pool: Any) -> tuple[Wire, UpstreamConnection]:
    """An idle connection in `pool` whose writes land in a Wire."""
    wire = Wire()
    conn = UpstreamConnection(pool)
    conn.connection_made(wire)
    pool.release(conn)
    return wire, conn


async def proxy_cost(pool: Any, proto: Any, client: Wire, request: bytes, n: int) -> float:
    """A proxied request: one upstream call, all of it synchronous on pooled connections."""
    up_wire, conn = _pooled(pool)

    def one() -> None:
        proto.data_received(request)
        conn.data_received(ANSWER)

    for _ in range(200):  # warm up (the first request may take the coroutine path)
        one()
        await asyncio.sleep(0)
    client.out.clear()
    up_wire.out.clear()
    if n == 0:  # count instead of time: Python opcodes and calls of one request
        return count_opcodes(one)
    t0 = time.process_time()
    for _ in range(n):
        one()
    spent = time.process_time() - t0
    assert len(client.out) == n and client.out[-1].startswith(b"HTTP/1.1 200"), \
        client.out[-1][:200] if client.out else None
    return spent / n * 1e6


async def aggregate_cost(pool: Any, proto: Any, client: Wire, request: bytes, n: int) -> float:
    """An aggregate of two calls: its steps run as tasks, so each request turns the loop
    until both calls are out, answers each, and turns it until the client's answer is
    written. The turns of this driver are counted in; they are the same in an A/B."""
    if n == 0:
        raise SystemExit("--opcodes counts a synchronous request; the aggregate route awaits")
    wires = [_pooled(pool) for _ in range(2)]  # the steps' calls go out together

    async def one() -> None:
        proto.data_received(request)
        pending = len(wires)
        while pending:
            await asyncio.sleep(0)
            for wire, conn in wires:
                if wire.out:
                    wire.out.clear()
                    conn.data_received(JSON_ANSWER)
                    pending -= 1
        while not client.out:
            await asyncio.sleep(0)
        assert client.out[-1].startswith(b"HTTP/1.1 200"), client.out[-1][:300]
        client.out.clear()

    for _ in range(200):
        await one()
    t0 = time.process_time()
    for _ in range(n):
        await one()
    return (time.process_time() - t0) / n * 1e6


BY_FUNCTION: Counter[str] = Counter()
BY_STAGE: Counter[str] = Counter()


def _stack(frame: Any) -> list[Frame]:
    """The frames from the outermost in, named like py-spy names them (for stage_of)."""
    out = []
    while frame is not None:
        code = frame.f_code
        path = Path(code.co_filename)
        name = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
        out.append(Frame(code.co_qualname, name))
        frame = frame.f_back
    return out[::-1]


def count_opcodes(fn: Any) -> float:
    """Python opcodes executed by `fn()`, by function and by request stage (the stages
    of bench/profile.py): deterministic, unlike time on a shared VM."""

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            BY_FUNCTION[f"{Path(code.co_filename).name}:{code.co_qualname}"] += 1
            BY_STAGE[stage_of(_stack(frame))] += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return float(sum(BY_FUNCTION.values()))


def floor_cost(path: str, n: int) -> float:
    pool = FloorPool(0)
    up = FloorUpstream(pool)
    up.connection_made(Wire())
    pool.idle.append(up)
    srv = FloorServer(pool)
    client = Wire()
    srv.connection_made(client)
    request = f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:18080\r\nuser-agent: wrk\r\n\r\n".encode()

    def one() -> None:
        srv.data_received(request)
        up.data_received(ANSWER)

    if n == 0:
        return count_opcodes(one)
    t0 = time.process_time()
    for _ in range(n):
        srv.data_received(request)
        up.data_received(ANSWER)
    return (time.process_time() - t0) / n * 1e6


async def login(gw: Gateway) -> str | None:
    """A token for the jwt routes, with its session in this gateway's own store."""
    services = gw.snapshot.services
    sessions, ring = services.get("sessions"), services.get("jwt")
    if sessions is None or ring is None:
        return None
    session = await sessions.create("o-bench-user-0001", None, "tiihtNczf5v6AKRyjwEUhQ==")
    return ring.issue({"sub": session.openid, "sid": session.sid})[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default=str(REPO / "bench" / "gateway-bare.yaml"))
    p.add_argument("--path", default="/bare/x")
    p.add_argument("--post", action="store_true", help="a small JSON POST (bench/post.lua's)")
    p.add_argument("-n", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--opcodes", action="store_true",
                   help="count the Python opcodes of one request instead of timing")
    p.add_argument("--top", type=int, default=0, help="with --opcodes: the N costliest functions")
    args = p.parse_args(argv)

    if args.opcodes:
        ops = uvloop.run(gateway_cost(args.config, args.path, 0, args.post))
        print(f"{args.path}: {ops:.0f} Python opcodes per request")
        for stage, n in BY_STAGE.most_common():
            print(f"{n:6d}  {100 * n / ops:4.1f}%  {stage}")
        for name, n in BY_FUNCTION.most_common(args.top):
            print(f"{n:6d}  {name}")
        BY_FUNCTION.clear()
        print(f"floor: {floor_cost(args.path, 0):.0f} Python opcodes per request")
        return 0

    async def run() -> tuple[float, float]:
        # interleaved, and the best of each: the machine's speed drifts within a minute
        ours, floor = [], []
        for _ in range(args.rounds):
            ours.append(await gateway_cost(args.config, args.path, args.n, args.post))
            floor.append(floor_cost(args.path, args.n))
        return min(ours), min(floor)

    ours, floor = uvloop.run(run())
    print(f"{args.path}: wxgated {ours:.1f} µs/request of its own code, "
          f"floor {floor:.1f} µs ({ours / floor:.1f}×), no kernel time in either")
    return 0


if __name__ == "__main__":
    sys.exit(main())
