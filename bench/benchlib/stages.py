"""Fold py-spy's raw (collapsed) stacks into the request stages of docs/PERFORMANCE.md.

Each sample goes to the stage of the innermost frame that names one, walking from the
leaf out: json.dumps under the access log counts as "log", a Request.header() call
under jwt_auth as "jwt_auth". Library and generic helper frames are transparent. A
sample with no wxgated frame on top of the loop is the event loop's own C work (epoll,
socket reads, callback scheduling in uvloop) — its kernel time shows in the sys share.
"""

from __future__ import annotations

import linecache
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?):(?P<line>\d+)\)$")

# (stage, file prefixes); first match from the leaf outwards wins.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("log", ("wxgated/observe/accesslog.py",)),
    ("metrics", ("wxgated/observe/metrics.py", "prometheus_client/")),
    ("route", ("wxgated/routing/",)),
    ("trace id", ("wxgated/observe/trace.py",)),
    ("filter: jwt_auth", ("wxgated/filters/jwt_auth.py", "wxgated/wechat/", "jwt/")),
    ("filter: rate_limit", ("wxgated/filters/rate_limit.py", "wxgated/limits/",
                            "wxgated/limits/clientkey.py")),
    ("state backend (memory or redis client)", ("redis/", "wxgated/state/")),
    ("filters (other)", ("wxgated/filters/",)),
    ("aggregate", ("wxgated/terminals/aggregate.py", "wxgated/aggregate/")),
    ("upstream: client protocol and pool", ("wxgated/http/client.py",)),
    ("upstream: proxy, balancer, breaker, accounting", (
        "wxgated/terminals/proxy.py", "wxgated/upstream/",
        "wxgated/http/errors.py")),
    ("header rules (forwarded, hop-by-hop, via)", ("wxgated/http/headers.py",)),
    ("response write", ("wxgated/http/writer.py",)),
    ("timeouts (Deadlines)", ("wxgated/http/deadlines.py",)),
    ("parse + request setup", ("wxgated/http/framing.py", "wxgated/http/target.py")),
)
# Frames that own everything beneath them, checked from the root in: the session check's
# state read and JSON decode belong to the session check, not to "state backend".
OWNERS: tuple[tuple[str, str], ...] = (
    ("filter: jwt_auth session check", "wxgated/wechat/sessions.py"),
    ("log", "wxgated/observe/accesslog.py"),
    ("metrics", "wxgated/observe/metrics.py"),
)
TRANSPARENT = ("wxgated/http/message.py", "wxgated/http/body.py",
               "wxgated/gateway/envelope.py", "wxgated/run.py", "wxgated/cli.py",
               "wxgated/__main__.py")
PARSE_FUNCS = ("GatewayProtocol.data_received", "GatewayProtocol.on_",
               "GatewayDispatcher.begin", "GatewayProtocol.connection_")
ENGINE_FILES = ("wxgated/http/server.py", "wxgated/http/cycle.py", "wxgated/http/flowcontrol.py",
                "wxgated/gateway/dispatch.py", "wxgated/gateway/engine.py")
LOOP_FILES = ("asyncio/runners.py", "uvloop/")


WRITES = "socket writes (kernel send, counted in our time)"


@dataclass(frozen=True)
class Frame:
    func: str
    file: str
    line: int = 0


def frames(stack: str) -> list[Frame]:
    out = []
    for part in stack.split(";"):
        m = _FRAME.match(part)
        out.append(Frame(m["func"], m["file"], int(m["line"])) if m else Frame(part, ""))
    return out


def _writes(leaf: Frame) -> bool:
    """A sample on a line of ours that writes to a socket: the time is the kernel's send
    (on loopback, delivery to the peer too), not the Python of the stage around it."""
    if not leaf.line or not leaf.file.startswith("wxgated/"):
        return False
    return "transport.write" in linecache.getline(str(REPO / leaf.file), leaf.line)


def stage_of(stack: list[Frame]) -> str:
    if stack and _writes(stack[-1]):
        return WRITES
    for f in stack:
        for stage, file in OWNERS:
            if f.file.startswith(file):
                return stage
    for f in reversed(stack):
        for stage, prefixes in RULES:
            if f.file.startswith(prefixes):
                return stage
        if f.file.startswith(ENGINE_FILES):
            if f.func.startswith(PARSE_FUNCS):
                return "parse + request setup"
            return "server: cycle, dispatch, engine, done"
        if f.file.startswith("wxgated/") and not f.file.startswith(TRANSPARENT):
            return f"other wxgated ({f.file})"
    leaf = stack[-1] if stack else Frame("", "")
    if leaf.file.startswith(LOOP_FILES):
        return "event loop (uvloop C: epoll, recv, scheduling)"
    return "other (asyncio, stdlib)"


def fold(raw: str) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """(samples per stage, per leaf function, per wxgated function inclusive) from
    py-spy --format raw."""
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if "Thread._bootstrap" in stack:
            continue  # helper threads (file watcher) sit in native waits py-spy counts busy
        fs = frames(stack)
        stages[stage_of(fs)] += int(count)
        leaf = fs[-1]
        leaves[f"{leaf.func} ({leaf.file})"] += int(count)
        for name in {f"{f.func} ({f.file})" for f in fs if f.file.startswith("wxgated/")
                     and not f.file.startswith(TRANSPARENT[-3:])}:
            inclusive[name] += int(count)
    return stages, leaves, inclusive


def render(name: str, stages: Counter[str], leaves: Counter[str], inclusive: Counter[str],
           cpu_us: float, top: int = 15) -> str:
    total = sum(stages.values()) or 1
    lines = [f"### {name}: {cpu_us:.1f} CPU µs/req, {total} samples", "",
             "| stage | share | ≈ µs/req |", "|---|---:|---:|"]
    for stage, n in stages.most_common():
        lines.append(f"| {stage} | {100 * n / total:.1f}% | {cpu_us * n / total:.1f} |")
    lines += ["", f"Top {top} leaf functions (self time):", "",
              "| function | share |", "|---|---:|"]
    for func, n in leaves.most_common(top):
        lines.append(f"| `{func}` | {100 * n / total:.1f}% |")
    lines += ["", f"Top {top} wxgated functions (inclusive):", "",
              "| function | share |", "|---|---:|"]
    for func, n in inclusive.most_common(top):
        lines.append(f"| `{func}` | {100 * n / total:.1f}% |")
    return "\n".join(lines) + "\n"
