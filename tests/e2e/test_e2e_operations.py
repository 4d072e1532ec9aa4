"""Issue 5 black-box: sd_notify, TLS (public listener and upstreams), connection limits,
through a real `wxgated run` subprocess."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.gateway import GatewayProcess, metric_value
from tests.support.servers import ThreadedApp, served
from tests.support.tls import TLSApp, echo_app

PING = {"name": "ping", "match": {"path": "/ping"}, "respond": {"json": {"pong": 1}}}


def raw_get(sock: socket.socket, path: str = "/ping", close: bool = True) -> bytes:
    """One HTTP/1.1 GET on an open (plain or TLS) socket; the whole answer."""
    conn = b"Connection: close\r\n" if close else b""
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n" + conn + b"\r\n")
    data = b""
    while True:
        if not close and b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"content-length: *(\d+)", head, re.I)
            if m and len(body) >= int(m.group(1)):
                return data
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # a refusal: the answer came, then the reset
            if data:
                return data
            raise
        if not chunk:
            return data
        data += chunk


# -- sd_notify --------------------------------------------------------------------------


class NotifyListener:
    """A fake NOTIFY_SOCKET: a unix datagram socket that also learns each sender's pid."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.got: list[tuple[int, dict[str, str]]] = []  # (sender pid, fields)

    def next(self, timeout: float = 20.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = -1
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.got.append((pid, fields))
        return fields

    def until(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            fields = self.next(max(0.1, deadline - time.monotonic()))
            if fields.get(key) == "1":
                return fields

    def states(self) -> list[str]:
        """The lifecycle messages in arrival order (STATUS-only datagrams left out)."""
        keys = ("READY", "RELOADING", "STOPPING")
        return [k for _, f in self.got for k in keys if f.get(k) == "1"]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_sd_notify_ready_reloading_stopping_in_order(workers: int, tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    gw = GatewayProcess(tmp_path, {"server": {"workers": workers}, "routes": [PING]},
                        env={"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "600000"})
    try:
        gw.start(wait=False)
        ready = listener.until("READY")
        # READY=1 means serving: the public port answers right now, no waiting
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            assert raw_get(s).startswith(b"HTTP/1.1 200")
        assert ready.get("STATUS")
        listener.until("WATCHDOG", timeout=5)  # pinged from the running loop
        listener.until("WATCHDOG", timeout=5)  # ... and again

        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        gw.signal(signal.SIGHUP)
        reloading = listener.until("RELOADING")
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert before <= int(reloading["MONOTONIC_USEC"]) <= after
        listener.until("READY")
        # the second READY=1 comes once the reload is done, not when it starts
        assert metric_value(gw.metrics(), "wxgated_config_reloads_total", result="success") == 1

        gw.signal(signal.SIGTERM)
        listener.until("STOPPING")
        assert gw.proc is not None and gw.proc.wait(20) == 0
        assert listener.states() == ["READY", "RELOADING", "READY", "STOPPING"]
        # only the main process speaks for the service (NotifyAccess=main)
        assert {pid for pid, _ in listener.got} == {gw.proc.pid}
    finally:
        gw.stop()
        listener.close()


# -- certificates made in the test ------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_cert(cn: str, issuer: tuple[Any, x509.Certificate] | None = None,
              ca: bool = False) -> tuple[bytes, bytes, Any, x509.Certificate]:
    """(cert PEM, key PEM, key, cert) for localhost and 127.0.0.1; self-signed unless
    `issuer` (key, cert) signs it."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sign_key, issuer_name = (issuer[0], issuer[1].subject) if issuer else (key, _name(cn))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca or issuer is None, path_length=None),
                       critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(sign_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem(key), key, cert


def install(cert: Path, key: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Replace the pair the way deploy tools do: write aside, rename over."""
    for path, data in ((key, key_pem), (cert, cert_pem)):
        aside = path.with_suffix(".new")
        aside.write_bytes(data)
        os.replace(aside, path)


def client_ctx(cafile: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_call(port: int, ctx: ssl.SSLContext, path: str = "/ping"
             ) -> tuple[str | None, str | None, bytes, bytes]:
    """(TLS version, ALPN, the server's cert DER, the HTTP answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return (s.version(), s.selected_alpn_protocol(), s.getpeercert(binary_form=True)
                    or b"", raw_get(s, path))


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(echo_app())


def tls_config(cert: Path, key: Path, upstream: ThreadedApp, workers: int = 1) -> dict[str, Any]:
    return {
        "server": {"workers": workers, "tls": {"cert": str(cert), "key": str(key)}},
        "upstreams": {"svc": {"targets": [{"url": upstream.url}]}},
        "routes": [PING, {"name": "echo", "match": {"path": "/echo/*rest"}, "upstream": "svc"}],
    }


def wait_for_cert(port: int, want: bytes, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while tls_call(port, client_ctx())[2] != want:
        assert time.monotonic() < deadline, "new connections still get the old certificate"
        time.sleep(0.2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_termination_and_cert_replacement(gateway: Any, upstream: ThreadedApp,
                                              tmp_path: Path) -> None:
    cert_pem, key_pem, _, _ = make_cert("first")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    install(cert, key, cert_pem, key_pem)
    gw = gateway(tls_config(cert, key, upstream))

    version, alpn, peer, answer = tls_call(gw.port, client_ctx(cert))  # verified chain
    assert version in ("TLSv1.2", "TLSv1.3") and alpn == "http/1.1"
    assert peer == der(cert_pem)
    assert answer.startswith(b"HTTP/1.1 200") and b'"pong"' in answer
    old12 = client_ctx(cert)
    old12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert tls_call(gw.port, old12)[:2] == ("TLSv1.2", "http/1.1")
    older = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    older.check_hostname = False
    older.verify_mode = ssl.CERT_NONE
    older.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would go down to 1.1 ...
    older.minimum_version = ssl.TLSVersion.TLSv1
    older.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):  # ... the gateway must not
        tls_call(gw.port, older)
    # the upstream learns the client spoke https
    body = tls_call(gw.port, client_ctx(cert), "/echo/x")[3].partition(b"\r\n\r\n")[2]
    assert json.loads(body)["headers"]["x-forwarded-proto"] == "https"
    # a plain-HTTP client gets no HTTP answer on the TLS port
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        try:
            assert not raw_get(s).startswith(b"HTTP/1.1 200")
        except ConnectionResetError:
            pass

    # a connection opened before the swap keeps working after it
    kept = client_ctx().wrap_socket(socket.create_connection(("127.0.0.1", gw.port), timeout=5),
                                    server_hostname="localhost")
    try:
        assert raw_get(kept, close=False).startswith(b"HTTP/1.1 200")
        new_pem, new_key, _, _ = make_cert("second")
        install(cert, key, new_pem, new_key)
        wait_for_cert(gw.port, der(new_pem))
        version, _, peer, answer = tls_call(gw.port, client_ctx(cert))  # trusts the new one
        assert peer == der(new_pem) and answer.startswith(b"HTTP/1.1 200")
        assert raw_get(kept, close=False).startswith(b"HTTP/1.1 200")
    finally:
        kept.close()


def test_cert_replacement_reaches_every_worker(gateway: Any, upstream: ThreadedApp,
                                               tmp_path: Path) -> None:
    cert_pem, key_pem, _, _ = make_cert("first")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    install(cert, key, cert_pem, key_pem)
    gw = gateway(tls_config(cert, key, upstream, workers=2))
    assert tls_call(gw.port, client_ctx(cert))[2] == der(cert_pem)
    new_pem, new_key, _, _ = make_cert("second")
    install(cert, key, new_pem, new_key)
    wait_for_cert(gw.port, der(new_pem))
    logged = len(gw.log_lines())
    # every new connection, whichever worker takes it, sees the new certificate
    seen = {tls_call(gw.port, client_ctx())[2] for _ in range(30)}
    assert seen == {der(new_pem)}
    deadline = time.monotonic() + 5
    while len({d["pid"] for d in gw.log_lines()[logged:] if d.get("route") == "ping"}) < 2:
        assert time.monotonic() < deadline, "the 30 connections did not reach both workers"
        time.sleep(0.1)
    assert gw.stop() == 0


# -- TLS to upstreams -------------------------------------------------------------------


def test_tls_to_upstreams_verifies_against_the_ca_file(gateway: Any, tmp_path: Path) -> None:
    ca_pem, _, ca_key, ca_cert = make_cert("test CA", ca=True)
    other_ca_pem = make_cert("another CA", ca=True)[0]
    leaf_pem, leaf_key, _, _ = make_cert("upstream", issuer=(ca_key, ca_cert))
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "other-ca.pem").write_bytes(other_ca_pem)
    (tmp_path / "up.crt").write_bytes(leaf_pem)
    (tmp_path / "up.key").write_bytes(leaf_key)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "up.crt", tmp_path / "up.key")
    up = TLSApp(echo_app(), server_ctx)
    try:
        def pool(**tls: Any) -> dict[str, Any]:
            return {"targets": [{"url": f"https://127.0.0.1:{up.port}"}], "tls": tls,
                    "retries": {"attempts": 1}}

        def route(name: str) -> dict[str, Any]:
            return {"name": name, "match": {"path": f"/{name}/*rest"},
                    "filters": [{"strip_prefix": 1}], "upstream": name}

        names = ("good", "wrongca", "systemca", "noverify")
        gw = gateway({
            "upstreams": {"good": pool(ca_file=str(tmp_path / "ca.pem")),
                          "wrongca": pool(ca_file=str(tmp_path / "other-ca.pem")),
                          "systemca": pool(), "noverify": pool(verify=False)},
            "routes": [route(n) for n in names]})

        import urllib.error
        import urllib.request

        def get(path: str) -> tuple[int, dict[str, Any]]:
            try:
                with urllib.request.urlopen(gw.url + path, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        status, doc = get("/good/hello")
        assert status == 200 and doc["tls"] is True and doc["path"] == "/hello"
        assert get("/noverify/x")[0] == 200
        for name in ("wrongca", "systemca"):  # verification is on unless turned off
            status, doc = get(f"/{name}/x")
            assert (status, doc["code"]) == (502, 502), name
            assert doc["trace_id"]
        assert get("/good/again")[0] == 200  # a failing pool does not poison the good one
    finally:
        up.stop()


# -- connection limits ------------------------------------------------------------------


def test_max_connections_refuses_beyond_the_limit(gateway: Any) -> None:
    gw = gateway({"server": {"limits": {"max_connections": 3}}, "routes": [PING]})
    held = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(3)]
    try:
        for s in held:  # each is accepted and served, and stays open (keep-alive)
            assert raw_get(s, close=False).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as extra:
            answer = raw_get(extra)  # read to EOF: refused and closed by the gateway
        assert answer.startswith(b"HTTP/1.1 503")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["code"] == 503
        for s in held:  # the held ones are unaffected
            assert raw_get(s, close=False).startswith(b"HTTP/1.1 200")
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # a freed slot is usable again
            with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
                if raw_get(s).startswith(b"HTTP/1.1 200"):
                    break
            assert time.monotonic() < deadline, "the freed slot was never reused"
            time.sleep(0.05)
    finally:
        for s in held:
            s.close()
