"""The supervisor as a real process tree: workers on one port, restarts, reload, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import free_port
from wxgated.process.workerpool import backoff_delay
from wxgated.process.workerproc import parse_listen

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = 0.1  # seconds between worker metric snapshots


class Tree:
    """`python -m tests.support.supervised` plus a NOTIFY_SOCKET to watch it through."""

    def __init__(self, tmp: Path, **opts: object) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = str(tmp / "notify.sock")
        self.notify.bind(path)
        self.notify.settimeout(30)
        options = {"port": self.port, "admin_port": self.admin_port, "notify": path,
                   "metrics_dir": str(tmp / "metrics"), "workers": 2, **opts}
        env = {**os.environ, "WXGATED_METRICS_INTERVAL": str(SNAPSHOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.supervised", json.dumps(options)], cwd=ROOT, env=env)

    def expect(self, key: str) -> dict[str, str]:
        """The next notification carrying `key`, skipping STATUS-only updates."""
        while True:
            msg = dict(line.split("=", 1) for line in self.notify.recv(4096).decode().split("\n"))
            if key in msg:
                return msg

    def ask(self, line: bytes = b"pid\n", timeout: float = 10) -> list[str]:
        """One request: (pid, index, reloads, payload) as strings."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(line)
            return s.makefile().readline().split()

    def ask_soon(self, timeout: float = 15) -> list[str]:
        """`ask`, retrying while no worker listens (all of them restarting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ask()
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def pids(self, want: int, tries: int = 400) -> set[int]:
        seen: set[int] = set()
        for _ in range(tries):
            seen.add(int(self.ask()[0]))
            if len(seen) >= want:
                break
        return seen

    def metric(self, name: str) -> float:
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=10) as s:
            s.sendall(b"GET /metrics\n")
            text = s.makefile().read()
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == name)

    def metric_reaches(self, name: str, want: float, timeout: float = 10) -> float:
        """Poll /metrics until `name` sums to `want` (workers snapshot periodically)."""
        deadline = time.monotonic() + timeout
        while (got := self.metric(name)) != want and time.monotonic() < deadline:
            time.sleep(SNAPSHOT)
        return got

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.notify.close()


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[callable]:
    trees: list[Tree] = []

    def start(**opts: object) -> Tree:
        home = tmp_path / str(len(trees))
        home.mkdir()
        t = Tree(home, **opts)
        trees.append(t)
        return t

    yield start
    for t in trees:
        t.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: set[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_two_workers_share_the_port_restart_and_stop_cleanly(tree) -> None:
    t = tree()
    assert t.expect("READY")["READY"] == "1"
    pids = t.pids(2)
    assert len(pids) == 2  # both workers answer on the one port
    assert t.ask()[3] == "cfg-1"  # the payload reached the workers

    victim = pids.pop()
    os.kill(victim, signal.SIGKILL)
    # Connections already queued on the victim's own SO_REUSEPORT socket are reset as it
    # dies (the price of per-worker sockets); once it is gone nothing more is lost.
    wait_gone({victim})
    deadline = time.monotonic() + 15
    fresh: set[int] = set()
    while time.monotonic() < deadline and not fresh:
        fresh = t.pids(2, tries=50) - pids - {victim}
    assert fresh, "the killed worker was not replaced"
    assert victim not in t.pids(2)

    t.proc.send_signal(signal.SIGTERM)
    assert t.expect("STOPPING")["STOPPING"] == "1"
    assert t.proc.wait(20) == 0
    wait_gone(pids | fresh)


def test_counters_survive_a_worker_kill(tree) -> None:
    t = tree()
    t.expect("READY")
    for _ in range(40):
        t.ask()
    assert t.metric_reaches("wxgated_requests_total", 40) == 40  # summed over both
    pids = t.pids(2)
    seen = t.metric("wxgated_requests_total")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_gone(pids)
    before = t.metric("wxgated_requests_total")
    assert before >= seen >= 40  # the dead workers' counts are kept: never backwards
    t.ask_soon()  # served by a restarted worker
    assert t.metric_reaches("wxgated_requests_total", before + 1) == before + 1


def test_sighup_reaches_every_worker_sharing_an_inherited_socket(tree) -> None:
    t = tree(reuse_port=False)  # the fallback where SO_REUSEPORT is missing
    t.expect("READY")
    pids = t.pids(2)
    t.proc.send_signal(signal.SIGHUP)
    reloading = t.expect("RELOADING")
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert t.expect("READY")["READY"] == "1"  # only after every worker confirmed
    reloads = {}
    for _ in range(400):
        pid, _, count, _ = t.ask()
        reloads[int(pid)] = int(count)
        if len(reloads) == 2:
            break
    assert reloads == {p: 1 for p in pids}
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(20) == 0


def test_sigterm_lets_in_flight_requests_finish(tree) -> None:
    t = tree()
    t.expect("READY")
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as slow:
        slow.sendall(b"slow 1.5\n")
        time.sleep(0.3)  # the worker is inside the request now
        t.proc.send_signal(signal.SIGTERM)
        assert slow.makefile().readline().split()[0].isdigit()  # answered, not cut off
    assert t.proc.wait(20) == 0
    with pytest.raises(OSError):
        t.ask(timeout=1)  # nobody listens any more


def test_stragglers_are_killed_after_the_grace_period(tree) -> None:
    t = tree(grace=0.5)
    t.expect("READY")
    pids = t.pids(2)
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as slow:
        slow.sendall(b"slow 60\n")
        time.sleep(0.3)
        t.proc.send_signal(signal.SIGTERM)
        assert t.proc.wait(15) == 1  # not clean: someone had to be killed
    wait_gone(pids)


def test_second_signal_kills_at_once(tree) -> None:
    t = tree(grace=60)
    t.expect("READY")
    pids = t.pids(2)
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as slow:
        slow.sendall(b"slow 60\n")
        time.sleep(0.3)
        t.proc.send_signal(signal.SIGINT)
        t.expect("STOPPING")
        t.proc.send_signal(signal.SIGINT)
        assert t.proc.wait(15) != 0  # well before the 60 s grace
    wait_gone(pids)


def pid_of(t: Tree, index: int, not_pid: int = 0, timeout: float = 15) -> int:
    """The pid of the worker at `index` (other than `not_pid`) as it answers on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, idx, _, _ = t.ask_soon()
        if int(idx) == index and int(pid) != not_pid:
            return int(pid)
    raise AssertionError(f"worker {index} never answered")


def test_a_worker_still_starting_gets_the_reload_once_ready(tree) -> None:
    t = tree(ready_delay=2.0)  # each worker serves for 2 s before it reports ready
    t.expect("READY")
    victim = pid_of(t, 0)
    os.kill(victim, signal.SIGKILL)
    wait_gone({victim})
    fresh = pid_of(t, 0, not_pid=victim)  # serving, but not reported ready yet
    t.proc.send_signal(signal.SIGHUP)
    t.expect("RELOADING")
    assert "failed" not in t.expect("READY").get("STATUS", "")
    deadline = time.monotonic() + 10
    while (answer := t.ask()) and (answer[0] != str(fresh) or answer[2] != "1"):
        assert time.monotonic() < deadline, "the worker that was starting never reloaded"
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(20) == 0


def test_a_worker_that_dies_during_a_reload_does_not_hold_it_up(tree) -> None:
    t = tree(silent=0)  # worker 0 takes SIGHUP but never answers
    t.expect("READY")
    silent = pid_of(t, 0)
    t.proc.send_signal(signal.SIGHUP)
    t.expect("RELOADING")
    started = time.monotonic()
    os.kill(silent, signal.SIGKILL)
    ready = t.expect("READY")
    assert time.monotonic() - started < 10  # not the 30 s reload timeout
    assert "failed" not in ready.get("STATUS", "")  # it will not serve the old config
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(20) == 0


def test_worker_that_cannot_start_stops_the_supervisor(tree) -> None:
    t = tree(fatal=True)
    assert t.proc.wait(30) == 78  # no endless restart loop, no READY=1


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, 0.5, 4.0) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_listen("[::]:443") == ("::", 443)
    assert parse_listen(":80") == ("", 80)
    assert parse_listen(("127.0.0.1", 0)) == ("127.0.0.1", 0)
