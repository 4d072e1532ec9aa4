"""One request, one answer, in order: whatever an upstream does wrong.

A client pipelines requests on keep-alive connections through `wxgated run` to an
upstream that, per request, answers, hangs up before answering, answers garbage,
answers too late, cuts its body short or resets. Every answer the client gets must
belong to its request, in order (a stray second answer would shift every later one on
that connection: a response-queue desync), and the gateway's in-flight counts
(`wxgated_requests_in_flight`, each target's `active`) never go below zero and come
back to zero.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import httptools
import pytest

from tests.support.gateway import GatewayProcess, metric_value
from tests.support.recording_upstream import RawUpstream, read_head

ACTIONS = ("ok", "ok", "ok", "close", "garbage", "late", "short", "reset")
READ_TIMEOUT = 0.3


class ChaosUpstream(RawUpstream):
    """Acts out the last path segment of each request: /p/<id>/<action>."""

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while (got := read_head(conn, buf)) is not None:
                head, buf = got
                target = head.split(b" ")[1]
                if not self._act(conn, target, target.rsplit(b"/", 1)[-1]):
                    return

    @staticmethod
    def _act(conn: socket.socket, target: bytes, action: bytes) -> bool:
        """Answer one request; False when the connection is done."""
        ok = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(target), target)
        if action == b"close":
            return False
        if action == b"reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return False
        if action == b"garbage":
            conn.sendall(b"HTTP/1.1 ???\r\n\r\n")
            return False
        if action == b"late":
            time.sleep(READ_TIMEOUT * 2)
        if action == b"short":
            conn.sendall(ok[:-3])
            return False
        try:
            conn.sendall(ok)
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    up = ChaosUpstream()
    config = {
        "upstreams": {"chaos": {"targets": [{"url": up.url}],
                                "timeouts": {"read": f"{int(READ_TIMEOUT * 1000)}ms"},
                                "passive_health": {"enabled": False}}},
        "routes": [{"name": "p", "match": {"path": "/p/*rest"}, "upstream": "chaos"}],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-chaos"), config).start()
    yield proc
    proc.stop()


def answers(port: int, targets: list[str]) -> list[tuple[int, bytes]]:
    """Pipeline GETs for `targets` on one connection; the answers, until it closes."""
    got: list[tuple[int, bytes]] = []
    body: list[bytes] = []

    class Sink:
        def on_body(self, b: bytes) -> None:
            body.append(b)

        def on_message_complete(self) -> None:
            got.append((parser.get_status_code(), b"".join(body)))
            body.clear()

    parser = httptools.HttpResponseParser(Sink())
    data = b"".join(b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % t.encode() for t in targets)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        while len(got) < len(targets):
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserError:
                break
    return got


def in_flight(gw: GatewayProcess) -> tuple[float, int]:
    """The in-flight gauge, and the sum of the chaos targets' `active` counts."""
    gauge = metric_value(gw.metrics(), "wxgated_requests_in_flight")
    with urllib.request.urlopen(gw.admin + "/-/upstreams", timeout=5) as r:
        doc = json.loads(r.read())
    ups = doc["upstreams"] if isinstance(doc, dict) and "upstreams" in doc else doc
    chaos = ups["chaos"] if isinstance(ups, dict) else next(u for u in ups if u["name"] == "chaos")
    return gauge, sum(t["active"] for t in chaos["targets"])


@pytest.mark.parametrize("seed", range(6))
def test_every_answer_belongs_to_its_request(gw: GatewayProcess, seed: int) -> None:
    rng = random.Random(seed)
    lows: list[tuple[float, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            lows.append(in_flight(gw))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results: list[tuple[list[str], list[tuple[int, bytes]]]] = []

    def client(n: int) -> None:
        targets = [f"/p/{seed}-{n}-{i}/{rng.choice(ACTIONS)}" for i in range(8)]
        results.append((targets, answers(gw.port, targets)))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    time.sleep(READ_TIMEOUT)  # a stray late answer would land by now
    stop.set()
    watcher.join(5)
    for targets, got in results:
        assert len(got) <= len(targets)
        for target, (status, body) in zip(targets, got, strict=False):
            if status == 200:
                assert body == target.encode(), (targets, got)
            else:  # the gateway's own envelope for the failure of *this* request
                assert status in (502, 503, 504), (target, status, body)
                assert json.loads(body)["code"] == status
            if target.endswith("/ok") and status != 200:
                pytest.fail(f"{target} answered {status}")
    assert all(g >= 0 and a >= 0 for g, a in lows), lows
    deadline = time.monotonic() + 3
    while in_flight(gw) != (0.0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_flight(gw) == (0.0, 0)
