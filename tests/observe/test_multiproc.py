"""Metrics summed over real worker processes; counters survive a worker's death."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from wxgated.observe import multiproc
from wxgated.observe.multiproc import _Snapshotter

SPAWN = multiprocessing.get_context("spawn")


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def requests_ok(text: bytes) -> float:
    return samples(text).get(
        ("wxgated_requests_total", (("method", "GET"), ("route", "r"), ("status", "200"))), 0.0)


def in_flight(text: bytes) -> float:
    return samples(text)[("wxgated_requests_in_flight", ())]


def _child(n: int, conn: Connection) -> None:
    """A stand-in worker: serve n requests, keep one in flight, then wait to be told."""
    multiproc.attach(interval=0.05)
    from wxgated.observe.metrics import IN_FLIGHT, REQUEST_DURATION, REQUESTS

    for _ in range(n):
        REQUESTS.labels("r", "GET", "200").inc()
        REQUEST_DURATION.labels("r", "GET").observe(0.02)
    IN_FLIGHT.inc()
    multiproc.flush()
    conn.send("ready")
    conn.recv()  # "exit" (or we get SIGKILLed)
    IN_FLIGHT.dec()
    REQUESTS.labels("r", "GET", "200").inc()  # counted by the final flush
    multiproc.teardown()


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Iterator[Path]:
    d = multiproc.setup(tmp_path / "metrics")
    yield d
    multiproc.teardown()
    os.environ.pop(multiproc.ENV, None)


def start_child(n: int) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    parent, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=_child, args=(n, child), daemon=True)
    proc.start()
    assert parent.poll(20), "child did not start"
    assert parent.recv() == "ready"
    return proc, parent


def test_sum_over_processes_and_no_drop_after_exit(metrics_dir: Path) -> None:
    a, a_conn = start_child(3)
    b, b_conn = start_child(4)
    try:
        text = multiproc.collect_text()
        assert requests_ok(text) == 7
        assert in_flight(text) == 2
        count_key = ("wxgated_request_duration_seconds_count", (("method", "GET"), ("route", "r")))
        assert samples(text)[count_key] == 7

        os.kill(b.pid, signal.SIGKILL)  # b's last flush had 4 requests
        b.join(5)
        multiproc.process_dead(b.pid)
        text = multiproc.collect_text()
        assert requests_ok(text) == 7  # never backwards
        assert samples(text)[count_key] == 7
        assert in_flight(text) == 1  # the dead worker's in-flight gauge is gone
        assert not list(metrics_dir.glob(f"*_{b.pid}.db"))
        assert (metrics_dir / "counter_archive.db").exists()

        a_conn.send("exit")  # a clean exit flushes its very last increment
        a.join(10)
        assert a.exitcode == 0
        multiproc.process_dead(a.pid)
        text = multiproc.collect_text()
        assert requests_ok(text) == 8
        assert in_flight(text) == 0

        c, c_conn = start_child(2)  # a restarted worker adds on top
        try:
            assert requests_ok(multiproc.collect_text()) == 10
        finally:
            c.kill()
            c.join(5)
    finally:
        for p in (a, b):
            if p.is_alive():
                p.kill()
                p.join(5)


class _Custom:
    """A collector that is not one of prometheus_client's metric classes."""

    def collect(self):
        yield CounterMetricFamily("t_custom", "doc", value=5)


def test_snapshot_round_trips_through_the_collector(tmp_path: Path) -> None:
    """What the supervisor shows equals what the worker's own registry says."""
    reg = CollectorRegistry()
    c = Counter("t_requests", "doc", ["route"], registry=reg)
    h = Histogram("t_seconds", "doc", ["route"], buckets=(0.1, 1.0), registry=reg)
    g = Gauge("t_open", "doc", ["route"], registry=reg, multiprocess_mode="livesum")
    plain = Counter("t_plain", "doc", registry=reg)
    summ = Summary("t_size", "doc", registry=reg)
    reg.register(_Custom())
    c.labels("a").inc(3)
    for v in (0.05, 0.05, 0.5, 5.0):
        h.labels("a").observe(v)
    g.labels("a").set(4)

    snap = _Snapshotter(tmp_path, reg)
    snap.flush()
    c.labels("a").inc()  # values change between flushes; the file follows
    c.labels("b").inc()  # and children appear
    h.labels("b").observe(0.5)
    g.labels("a").dec()
    plain.inc(2)
    summ.observe(7)
    summ.observe(3)
    snap.flush()
    snap.close()

    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=str(tmp_path))
    want = samples(generate_latest(reg))
    assert ("t_custom_total", ()) in want and ("t_size_sum", ()) in want
    assert samples(generate_latest(merged)) == want


def test_folding_many_dead_workers_keeps_one_file_per_type(metrics_dir: Path) -> None:
    reg = CollectorRegistry()
    c = Counter("t_total", "doc", registry=reg)
    for fake_pid in range(1000001, 1000021):
        c.inc()
        snap = _Snapshotter(metrics_dir, reg, pid=fake_pid)
        snap.flush()
        snap.close()
        multiproc.process_dead(fake_pid)
    assert sorted(p.name for p in metrics_dir.glob("*.db")) == ["counter_archive.db"]
    # Each "worker" wrote the running total; the archive is the sum of the 20 snapshots.
    assert samples(multiproc.collect_text())[("t_total", ())] == sum(range(1, 21))


def test_without_setup_collect_text_is_this_process() -> None:
    assert not multiproc.enabled()
    text = multiproc.collect_text()
    assert b"# TYPE wxgated_requests_total counter" in text
    assert multiproc.attach() is None  # not under a supervisor
