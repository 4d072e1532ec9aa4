"""sd_notify over a real unix datagram socket, the way systemd receives it."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wxgated.process.sdnotify import Notifier, monotonic_usec


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_lifecycle_messages_arrive_in_order(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(env={"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="serving on :8080")
    before = monotonic_usec()
    assert n.reloading()
    after = monotonic_usec()
    assert n.ready()
    assert n.stopping()
    assert n.status("draining\n3 requests")

    assert recv(sock) == {"READY": "1", "STATUS": "serving on :8080"}
    reloading = recv(sock)
    assert reloading["RELOADING"] == "1"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    assert recv(sock) == {"READY": "1"}
    assert recv(sock) == {"STOPPING": "1"}
    assert recv(sock) == {"STATUS": "draining 3 requests"}
    n.close()


def test_abstract_socket() -> None:
    name = f"wxgated-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        n = Notifier(env={"NOTIFY_SOCKET": "@" + name})
        assert n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        n.close()


def test_without_notify_socket_everything_is_a_noop() -> None:
    n = Notifier(env={})
    assert not n.enabled
    assert n.ready() is False
    assert n.reloading() is False
    assert n.stopping() is False
    assert n.status("x") is False
    assert n.watchdog() is False
    assert n.watchdog_interval() is None


def test_missing_receiver_does_not_raise(tmp_path: Path) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.ready() is False


def test_unset_env_hides_the_socket_from_children(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier(env=env, unset_env=True)
    assert env == {}
    assert n.enabled
    assert n.watchdog_interval() == 30.0


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("30000000", "other", None),
        ("0", None, None),
        ("junk", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    listener: tuple[socket.socket, str], usec: str | None, pid: str | None, expected: float | None
) -> None:
    env = {"NOTIFY_SOCKET": listener[1]}
    if usec is not None:
        env["WATCHDOG_USEC"] = usec
    if pid is not None:
        env["WATCHDOG_PID"] = str(os.getpid() if pid == "self" else os.getpid() + 1)
    assert Notifier(env=env).watchdog_interval() == expected


async def test_watchdog_task_pings_at_half_the_interval(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    sock.setblocking(False)
    n = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    task = n.start_watchdog()
    assert task is not None
    await asyncio.sleep(0.45)  # pings at ~0, 0.1, 0.2, 0.3, 0.4
    task.cancel()
    pings = []
    while True:
        try:
            pings.append(sock.recv(64))
        except BlockingIOError:
            break
    assert set(pings) == {b"WATCHDOG=1"}
    assert 3 <= len(pings) <= 6


async def test_watchdog_stops_pinging_when_unhealthy(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.setblocking(False)
    n = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    task = n.start_watchdog(healthy=lambda: False)
    assert task is not None
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(BlockingIOError):
        sock.recv(64)


async def test_no_watchdog_task_without_watchdog_usec(
    listener: tuple[socket.socket, str],
) -> None:
    assert Notifier(env={"NOTIFY_SOCKET": listener[1]}).start_watchdog() is None
    assert Notifier(env={}).start_watchdog() is None


def test_monotonic_usec_is_the_monotonic_clock() -> None:
    a = time.monotonic_ns() // 1000
    b = monotonic_usec()
    c = time.monotonic_ns() // 1000
    assert a <= b <= c
