"""What a run of bench/connections.py needs from the machine, checked before it starts.

Each held connection is two sockets on this host (the client's and the gateway's), each
an fd in some process. The per-process fd limit (RLIMIT_NOFILE) decides how many gateway
workers and client processes the run needs; the system-wide limits (fs.file-max, epoll
watches, conntrack if it tracks loopback) and memory decide whether it can run at all.
A shortfall is reported with the value needed; `--tune` raises the sysctls that allow
it for the run, and they are restored on the way out.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass, field
from pathlib import Path

WORKER_RESERVE = 500  # a worker's own fds: listener, epoll, upstream pool, pipes, files
CLIENT_RESERVE = 100
IMBALANCE = 1.06  # SO_REUSEPORT hashes connections to workers: some get a few % more
# for the memory estimate (measured on this project's VM, bench/RESULTS.md)
GATEWAY_KIB, KERNEL_KIB, CLIENT_KIB = 5.0, 8.0, 0.5  # per held connection
WORKER_BASE_MIB, CLIENT_BASE_MIB = 70, 15


def raise_nofile() -> tuple[int, str]:
    """Lift this process's fd limit (inherited by the gateway and the clients) as far as
    allowed: the hard limit up to fs.nr_open needs CAP_SYS_RESOURCE. Returns the new
    limit and a note when the hard limit could not be raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nr_open = int(read_sysctl("fs.nr_open") or hard)
    note = ""
    if hard != resource.RLIM_INFINITY and hard < nr_open:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nr_open, nr_open))
            return nr_open, ""
        except (ValueError, OSError):
            note = (f"RLIMIT_NOFILE hard limit is {hard:,} and cannot be raised to fs.nr_open "
                    f"{nr_open:,} here (no CAP_SYS_RESOURCE, even as root)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard, note


@dataclass(frozen=True)
class Plan:
    """How the connections are spread over processes and source addresses."""

    connections: int
    workers: int
    clients: int
    per_worker_max: int  # server.limits.max_connections
    per_source: int
    sources: list[str] = field(repr=False)

    @classmethod
    def make(cls, connections: int, nofile: int, workers: int, clients: int,
             per_source: int) -> Plan:
        worker_cap = nofile - WORKER_RESERVE
        client_cap = nofile - CLIENT_RESERVE
        need_w = max(2, math.ceil(connections * IMBALANCE / worker_cap))
        need_c = max(1, math.ceil(connections / client_cap))
        ports = _port_range_size()
        per_source = max(1, min(per_source, int(ports * 0.6)))
        clients = max(clients, need_c)
        n_sources = math.ceil(connections / per_source) + clients  # each client's own
        return cls(connections, max(workers, need_w), clients, worker_cap, per_source,
                   _sources(n_sources))


def _sources(n: int) -> list[str]:
    """127.1.0.1, 127.1.0.2, … (never 127.0.0.x: the machine's own clients use those)."""
    out = []
    for i in range(n):
        hi, lo = divmod(i, 254)
        out.append(f"127.{1 + hi // 256}.{hi % 256}.{lo + 1}")
    return out


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def _port_range_size() -> int:
    lo, hi = (int(x) for x in (read_sysctl("net.ipv4.ip_local_port_range") or "32768 60999")
              .split())
    return hi - lo + 1


def meminfo_kib(name: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def shortfalls(plan: Plan) -> dict[str, int]:
    """sysctl → the value the run needs, for those set lower."""
    n = plan.connections
    want = {
        "fs.file-max": 2 * n + 50_000,
        "fs.epoll.max_user_watches": n + 50_000,  # the gateway's side of each is watched
    }
    if int(read_sysctl("net.netfilter.nf_conntrack_count") or 0) > 0:
        want["net.netfilter.nf_conntrack_max"] = n + 50_000  # it tracks loopback too
    out = {}
    for name, value in want.items():
        have = read_sysctl(name)
        if have is not None and int(have) < value:
            out[name] = value
    return out


def memory_needed_kib(plan: Plan) -> int:
    n = plan.connections
    return int(n * (GATEWAY_KIB + KERNEL_KIB + CLIENT_KIB)
               + plan.workers * WORKER_BASE_MIB * 1024 + plan.clients * CLIENT_BASE_MIB * 1024)


class Sysctls:
    """Sysctls raised for the run, and put back as they were by `restore`."""

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    def raise_to(self, wanted: dict[str, int]) -> list[str]:
        """Set each; returns what could not be set."""
        failed = []
        for name, value in wanted.items():
            old = read_sysctl(name)
            try:
                Path("/proc/sys/" + name.replace(".", "/")).write_text(str(value))
            except OSError:
                failed.append(name)
                continue
            if old is not None:
                self.saved.setdefault(name, old)
        return failed

    def restore(self) -> None:
        for name, old in self.saved.items():
            try:
                Path("/proc/sys/" + name.replace(".", "/")).write_text(old)
            except OSError:
                pass
        self.saved.clear()
