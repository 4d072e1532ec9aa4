"""A real DNS server for discovery tests: dnsmasq as a child process on a free port.

Records come from two files: an addn-hosts file (A/AAAA; SIGHUP re-reads it, so
`set_hosts` changes them live) and a conf file with `srv-host=` lines (read only at
start, so `set_srv` restarts the server on the same port). `--local=/test/` makes the
server authoritative for *.test: a name it does not know is NXDOMAIN, not a REFUSED
for lack of upstream servers. `--local-ttl` sets the TTL of every answer.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
import time
from pathlib import Path

import dns.resolver
import pytest

from tests.support.servers import free_port


class DnsServer:
    def __init__(self, tmp: Path, ttl: int = 1) -> None:
        exe = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin")
        if exe is None:
            pytest.fail("dnsmasq is not installed; run scripts/test.sh, which installs it")
        self.exe = exe
        self.tmp = tmp
        self.ttl = ttl
        self.port = free_port()
        self.hosts = tmp / "dns.hosts"
        self.conf = tmp / "dnsmasq.conf"
        self.log = tmp / "dnsmasq.log"
        self.hosts.write_text("")
        self.conf.write_text("")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsServer:
        self.proc = subprocess.Popen(
            [self.exe, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1",
             "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts}",
             f"--conf-file={self.conf}", "--local=/test/", f"--local-ttl={self.ttl}",
             f"--user={getpass.getuser()}", f"--pid-file={self.tmp / 'dnsmasq.pid'}",
             "--log-facility=-"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        self._wait_answering()
        return self

    def _wait_answering(self, timeout: float = 10.0) -> None:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = ["127.0.0.1"]
        res.port = self.port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.log.read_text()}")
            try:
                res.resolve("probe.test", "A", lifetime=0.3, raise_on_no_answer=False)
                return
            except dns.resolver.NXDOMAIN:
                return
            except dns.exception.DNSException:
                time.sleep(0.05)
        raise TimeoutError(f"dnsmasq not answering: {self.log.read_text()}")

    def set_hosts(self, records: dict[str, list[str]]) -> None:
        """Replace the A/AAAA records (name -> addresses); a running server re-reads them."""
        lines = [f"{addr} {name}" for name, addrs in records.items() for addr in addrs]
        self.hosts.write_text("".join(line + "\n" for line in lines))
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)
            time.sleep(0.1)  # dnsmasq re-reads between queries

    def set_srv(self, records: list[tuple[str, str, int, int, int]]) -> None:
        """Replace the SRV records (name, target, port, priority, weight); restarts."""
        self.conf.write_text("".join(f"srv-host={n},{t},{port},{prio},{w}\n"
                                     for n, t, port, prio, w in records))
        if self.proc is not None:
            self.stop()
            self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None
