"""Metrics summed over worker processes, with counters that survive worker restarts.

Why not prometheus_client's multiprocess mode as is: it writes every `inc()`/`observe()`
through a lock into an mmap, which measured ~15 µs of metric work per proxied request
against ~6.5 µs in memory (route counter + histogram, upstream counter + histogram,
in-flight gauge; see docs/OPERATIONS.md). That is ~8 µs of a ~100 µs budget.

So workers keep prometheus_client's ordinary in-memory metrics on the hot path, and a
background thread copies a snapshot of the registry once a second into the *same file
format* multiprocess mode uses (`<type>_<pid>.db`, MmapedDict). The supervisor reads
the directory with prometheus_client's own `MultiProcessCollector`, so summing,
histogram buckets and gauge `multiprocess_mode`s behave exactly as documented there.
The price: /metrics lags by up to one flush interval, and a worker killed with SIGKILL
loses at most its last interval of increments (a clean exit flushes at the end).

Counters never go backwards: a dead worker's counter and histogram files stay, and
`process_dead()` folds them into one `<type>_archive.db` so a crash loop cannot grow the
directory without bound; its gauges are dropped (a dead worker has no in-flight
requests and no opinion on breaker state). The fold and `collect_text()` must run on
the same thread (the supervisor's event loop) so a scrape never sees a value twice.

PROMETHEUS_MULTIPROC_DIR must stay unset: it would switch prometheus_client itself to
mmap mode. We use WXGATED_METRICS_DIR.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

ENV = "WXGATED_METRICS_DIR"
INTERVAL_ENV = "WXGATED_METRICS_INTERVAL"
_SUMMED = ("counter", "histogram", "summary")
_WALKABLE = (Counter, Gauge, Histogram, Summary)


class _Snapshotter:
    """Writes one process's registry into `<dir>/<type>_<pid>.db` files.

    Going through `registry.collect()` builds a Sample per series per flush (~50 µs per
    series: a 5k-series registry cost tens of ms each second). So for prometheus_client's
    own metric classes we walk the children once, remember each value object with its
    file key, and a flush only compares floats and rewrites the ones that changed. That
    reads a few private attributes (`_metrics`, `_value`, `_buckets`, `_sum`, ...);
    `test_snapshot_round_trips_through_the_collector` catches a library change. Anything
    else (custom collectors, callback gauges) goes through collect().
    """

    def __init__(
        self, directory: Path, registry: CollectorRegistry, pid: int | None = None
    ) -> None:
        self.directory = directory
        self.registry = registry
        self._files: dict[str, MmapedDict] = {}
        self._owner = os.getpid()
        self._pid = pid if pid is not None else self._owner
        self._known: dict[int, object] = {}  # id → child (kept alive so ids stay unique)
        self._entries: list[list[Any]] = []  # [value object, file, key, last written]
        self._lock = threading.Lock()
        self._failed = False

    def _file(self, prefix: str) -> MmapedDict:
        f = self._files.get(prefix)
        if f is None:
            # made under a name the collector does not read (not *.db), renamed in once
            # its header is written: a scrape meanwhile would read an empty file and fail
            path = self.directory / f"{prefix}_{self._pid}.db"
            tmp = path.with_name(path.name + ".new")
            f = self._files[prefix] = MmapedDict(str(tmp))
            os.replace(tmp, path)  # the mapping stays valid under the new name
        return f

    def flush(self) -> None:
        with self._lock:
            if os.getpid() != self._owner:  # forked: never write into the parent's files
                self.close()
                self._owner = self._pid = os.getpid()
            try:
                self._write()
            except OSError as exc:
                if not self._failed:
                    log.warning("metrics snapshot to %s failed: %s", self.directory, exc)
                self._failed = True
            else:
                self._failed = False

    def _write(self) -> None:
        for collector in list(getattr(self.registry, "_collector_to_names", ())):
            if isinstance(collector, _WALKABLE) and "_child_samples" not in vars(collector):
                self._discover(collector)
            else:
                for family in collector.collect():
                    self._write_family(family)
        for entry in self._entries:
            value = entry[0].get()
            if value != entry[3]:
                entry[1].write_value(entry[2], value, 0.0)
                entry[3] = value

    def _discover(self, metric: Any) -> None:
        """Register value objects of children created since the last flush."""
        if metric._labelnames:
            with metric._lock:  # labels() may be adding a child on the loop thread
                children = list(metric._metrics.items())
        else:
            children = [((), metric)]
        for labelvalues, child in children:
            if id(child) not in self._known:
                self._known[id(child)] = child
                self._add_child(metric, child, list(labelvalues))

    def _add_child(self, metric: Any, child: Any, values: list[str]) -> None:
        name, doc, names = metric._name, metric._documentation, list(metric._labelnames)
        if isinstance(metric, Counter):
            series = [("counter", child._value, "_total", names, values)]
        elif isinstance(metric, Gauge):
            series = [("gauge_" + metric._multiprocess_mode, child._value, "", names, values)]
        elif isinstance(metric, Histogram):
            series = [("histogram", child._sum, "_sum", names, values)]
            series += [("histogram", bucket, "_bucket", [*names, "le"],
                        [*values, floatToGoString(bound)])
                       for bound, bucket in zip(metric._upper_bounds, child._buckets, strict=True)]
        else:  # Summary
            series = [("summary", child._count, "_count", names, values),
                      ("summary", child._sum, "_sum", names, values)]
        for prefix, obj, suffix, n, v in series:
            key = mmap_key(name, name + suffix, n, v, doc)
            self._entries.append([obj, self._file(prefix), key, None])

    def _write_family(self, family: Any) -> None:
        typ = family.type
        if typ == "gauge":
            out = self._file("gauge_all")  # collect() does not say which mode was meant
        elif typ in _SUMMED:
            out = self._file(typ)
        else:
            return
        below: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
        is_hist = typ == "histogram"
        for s in family.samples:
            value = s.value
            if s.name.endswith("_created") or (is_hist and s.name.endswith("_count")):
                continue  # the collector derives a histogram's _count from its buckets
            if is_hist and s.name.endswith("_bucket"):
                # Files hold per-bucket counts; collect() gives cumulative ones.
                group = tuple((k, v) for k, v in s.labels.items() if k != "le")
                value, below[group] = value - below[group], value
            key = mmap_key(family.name, s.name, list(s.labels), list(s.labels.values()),
                           family.documentation)
            out.write_value(key, value, 0.0)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._known.clear()
        self._entries.clear()


class _State:
    def __init__(self, directory: Path, owned: bool) -> None:
        self.directory = directory
        self.owned = owned
        self.snapshotter: _Snapshotter | None = None
        self.collect_registry: CollectorRegistry | None = None
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()


_state: _State | None = None


def _registry() -> CollectorRegistry:
    from wxgated.observe.metrics import REGISTRY

    return REGISTRY


def setup(directory: str | os.PathLike[str] | None = None) -> Path:
    """In the supervisor, before any worker starts: make an empty metrics directory and
    export it (WXGATED_METRICS_DIR) to the workers. `directory` defaults to
    WXGATED_METRICS_DIR (the unit sets /run/wxgated/metrics), else a private temp dir
    is made and `teardown()` removes it. Leftover files of a previous run are deleted:
    counters start from zero with a new service instance."""
    global _state
    if directory is None:
        directory = os.environ.get(ENV) or None
    if directory is None:
        path, owned = Path(tempfile.mkdtemp(prefix="wxgated-metrics-")), True
    else:
        path, owned = Path(directory), False
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    if os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None) is not None:
        log.warning("PROMETHEUS_MULTIPROC_DIR ignored: wxgated aggregates worker metrics itself")
    os.environ[ENV] = str(path)
    _state = _State(path, owned)
    _state.collect_registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(_state.collect_registry, path=str(path))
    return path


def attach(interval: float | None = None) -> Path | None:
    """In a worker: start snapshotting this process's metrics into the supervisor's
    directory (named by WXGATED_METRICS_DIR) every `interval` seconds (default
    WXGATED_METRICS_INTERVAL, else 1) from a daemon thread. No-op (None) when the
    variable is unset, i.e. not under a supervisor."""
    global _state
    raw = os.environ.get(ENV)
    if not raw:
        return None
    if interval is None:
        interval = float(os.environ.get(INTERVAL_ENV, "1"))
    _state = _State(Path(raw), owned=False)
    _state.snapshotter = _Snapshotter(_state.directory, _registry())
    state = _state
    _state.thread = threading.Thread(
        target=_flush_loop, args=(state, interval), name="metrics-snapshot", daemon=True)
    _state.thread.start()
    return _state.directory


def _flush_loop(state: _State, interval: float) -> None:
    while not state.stop.wait(interval):
        if state.snapshotter is not None:
            state.snapshotter.flush()


def enabled() -> bool:
    return _state is not None


def flush() -> None:
    """Write this process's current values now (a worker calls this as it exits)."""
    if _state is not None:
        if _state.snapshotter is None:
            _state.snapshotter = _Snapshotter(_state.directory, _registry())
        _state.snapshotter.flush()


def collect_text() -> bytes:
    """The /metrics body: the sum over all workers (and this process) after `setup()`,
    else just this process's registry (single-process mode)."""
    if _state is None or _state.collect_registry is None:
        return generate_latest(_registry())
    flush()  # the supervisor's own metrics (e.g. reloads it counted) join the sum
    return generate_latest(_state.collect_registry)


def collect_families() -> list[Any]:
    """The metric families /metrics would show (summed over workers after `setup()`),
    for the status page's ring; same thread rule as `collect_text()`."""
    if _state is None or _state.collect_registry is None:
        from wxgated.observe.metrics import flush as flush_local

        flush_local()
        return list(_registry().collect())
    flush()
    return list(_state.collect_registry.collect())


def process_dead(pid: int) -> None:
    """A worker exited: keep its counters (folded into the archive), drop its gauges."""
    if _state is None or pid == os.getpid():
        return
    d = _state.directory
    for typ in _SUMMED:
        dead = d / f"{typ}_{pid}.db"
        if dead.exists():
            _fold(dead, d / f"{typ}_archive.db")
    for gauge in glob.glob(str(d / f"gauge_*_{pid}.db")):
        os.unlink(gauge)


def _fold(dead: Path, archive: Path) -> None:
    """archive := archive + dead, swapped in by rename, then dead removed."""
    totals: dict[str, float] = defaultdict(float)
    for src in (archive, dead):
        if src.exists():
            for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(src)):
                totals[key] += value
    tmp = archive.with_name(archive.name + ".tmp")  # not *.db: invisible to the collector
    tmp.unlink(missing_ok=True)
    out = MmapedDict(str(tmp))
    try:
        for key, value in totals.items():
            out.write_value(key, value, 0.0)
    finally:
        out.close()
    os.replace(tmp, archive)
    dead.unlink()


def teardown() -> None:
    """Stop snapshotting, write a last snapshot, forget the directory (and remove it if
    `setup()` made it)."""
    global _state
    state, _state = _state, None
    if state is None:
        return
    state.stop.set()
    if state.thread is not None:
        state.thread.join(timeout=5)
    if state.snapshotter is not None:
        state.snapshotter.flush()
        state.snapshotter.close()
    if state.owned:
        shutil.rmtree(state.directory, ignore_errors=True)
        if os.environ.get(ENV) == str(state.directory):
            del os.environ[ENV]
