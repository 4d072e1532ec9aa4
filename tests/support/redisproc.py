"""redis-server processes of the tests' own: a single node on a port of the test's
choosing (to stop and restart it), and a one-node Redis Cluster."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.support.servers import free_port, wait_port


def start_redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed"
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:  # e.g. the port was taken between free_port and bind
            raise RuntimeError(f"redis-server could not start on port {port}")
        try:
            wait_port(port, timeout=0.1)
            return proc
        except TimeoutError:
            if time.monotonic() > deadline:
                proc.kill()
                raise


def start_cluster_node(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A one-node Redis Cluster owning every slot: enough to run the Cluster client path."""
    cli = shutil.which("redis-cli")
    assert cli, "redis-cli is not installed"
    for attempt in range(3):  # free ports can be taken by parallel test runs; retry
        port = free_port()
        try:
            # The bus port defaults to port + 10000, which can lie past 65535.
            proc = start_redis(port, workdir, "--cluster-enabled", "yes",
                               "--cluster-port", str(free_port()),
                               "--cluster-config-file", str(workdir / f"nodes-{attempt}.conf"))
        except RuntimeError:
            continue
        added = subprocess.run([cli, "-p", str(port), "cluster", "addslotsrange", "0", "16383"],
                               capture_output=True)
        if added.returncode == 0 and added.stdout.strip() == b"OK":
            return proc, port
        proc.terminate()
        proc.wait(5)
    raise RuntimeError("could not start a one-node Redis Cluster")
