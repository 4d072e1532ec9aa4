"""Memory as /proc sees it, for bench/connections.py: the gateway's processes (VmRSS
and Pss) and the kernel's (TCP buffer pages, slab), read before and after opening the
connections so the difference can be divided by their number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchlib.procs import PAGE


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        out[name] = int(rest.split()[0])
    return out


def _sockstat() -> dict[str, int]:
    """/proc/net/sockstat's TCP line (inuse, orphan, tw, alloc, mem) and sockets used."""
    out = {}
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        proto, _, rest = line.partition(":")
        fields = rest.split()
        if proto in ("TCP", "sockets"):
            for key, value in zip(fields[::2], fields[1::2], strict=False):
                out[f"{proto}.{key}"] = int(value)
    return out


def slabs() -> dict[str, int]:
    """KiB held by each slab cache (num_objs × objsize), from /proc/slabinfo (root)."""
    out: dict[str, int] = {}
    try:
        lines = Path("/proc/slabinfo").read_text().splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        f = line.split()
        out[f[0]] = int(f[2]) * int(f[3]) // 1024
    return out


@dataclass(frozen=True)
class Memory:
    """One reading. KiB throughout; `tcp_mem_kib` is sockstat's `mem` (pages) in KiB."""

    rss_kib: int  # VmRSS summed over the gateway's processes
    pss_kib: int  # Pss summed (shared pages split between the processes sharing them)
    clients_rss_kib: int
    tcp_mem_kib: int
    tcp_inuse: int
    slab_kib: int
    sunreclaim_kib: int
    available_kib: int
    slab_caches: dict[str, int]

    @classmethod
    def read(cls, gateway: list[int], clients: list[int]) -> Memory:
        mem = _meminfo()
        sock = _sockstat()
        return cls(
            rss_kib=sum(_status_kib(p, "VmRSS") for p in gateway),
            pss_kib=sum(_pss_kib(p) for p in gateway),
            clients_rss_kib=sum(_status_kib(p, "VmRSS") for p in clients),
            tcp_mem_kib=sock.get("TCP.mem", 0) * PAGE // 1024,
            tcp_inuse=sock.get("TCP.inuse", 0),
            slab_kib=mem.get("Slab", 0),
            sunreclaim_kib=mem.get("SUnreclaim", 0),
            available_kib=mem.get("MemAvailable", 0),
            slab_caches=slabs(),
        )


def per_conn(after: int, before: int, n: int) -> float:
    """KiB per connection of a growth (0 when nothing is held)."""
    return (after - before) / n if n else 0.0


def top_slab_growth(before: Memory, after: Memory, n: int, count: int = 6) -> str:
    """The slab caches that grew most, as `name B/conn` (bytes per connection)."""
    if not n or not after.slab_caches:
        return ""
    grew = sorted(((after.slab_caches[k] - before.slab_caches.get(k, 0), k)
                   for k in after.slab_caches), reverse=True)[:count]
    return ", ".join(f"{name} {kib * 1024 / n:,.0f} B" for kib, name in grew if kib > 0)
