"""TLS termination and hot certificate reload over real sockets with a test-made CA-less cert."""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wxgated.http.tls import CertReloader, client_context, server_context


def make_cert(cn: str) -> tuple[bytes, bytes, bytes]:
    """A self-signed cert for localhost: (cert PEM, key PEM, cert DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (cert.public_bytes(serialization.Encoding.PEM), key_pem,
            cert.public_bytes(serialization.Encoding.DER))


def install(tmp: Path, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    """Replace the files the way deploy tools do: write aside, then rename over."""
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    for path, data in ((cert, cert_pem), (key, key_pem)):
        aside = path.with_suffix(".new")
        aside.write_bytes(data)
        os.replace(aside, path)
    return cert, key


async def _hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello")
    await writer.drain()
    writer.close()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, CertReloader, bytes, bytes]]:
    cert_pem, key_pem, der = make_cert("first")
    cert, key = install(tmp_path, cert_pem, key_pem)
    reloader = CertReloader(cert, key)
    server = await asyncio.start_server(_hello, "127.0.0.1", 0, ssl=reloader.context)
    port = server.sockets[0].getsockname()[1]
    yield port, reloader, der, cert_pem
    server.close()
    await server.wait_closed()


async def handshake(port: int, ctx: ssl.SSLContext) -> tuple[str, str | None, bytes, bytes]:
    """(TLS version, ALPN, the server's cert DER, what the server said)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    sslobj = writer.get_extra_info("ssl_object")
    result = (sslobj.version(), sslobj.selected_alpn_protocol(),
              sslobj.getpeercert(binary_form=True), await reader.read())
    writer.close()
    return result


def trusting(cert_pem: bytes, tmp_path: Path) -> ssl.SSLContext:
    ca = tmp_path / f"ca-{len(list(tmp_path.iterdir()))}.pem"
    ca.write_bytes(cert_pem)
    return client_context(ca_file=ca)


async def test_negotiates_tls12_plus_and_alpn_http11(tls_server, tmp_path: Path) -> None:
    port, _, der, cert_pem = tls_server
    version, alpn, peer, body = await handshake(port, trusting(cert_pem, tmp_path))
    assert version in ("TLSv1.2", "TLSv1.3")
    assert alpn == "http/1.1"
    assert peer == der
    assert body == b"hello"


async def test_tls12_only_client_is_served(tls_server, tmp_path: Path) -> None:
    port, _, _, cert_pem = tls_server
    ctx = trusting(cert_pem, tmp_path)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    version, alpn, _, _ = await handshake(port, ctx)
    assert (version, alpn) == ("TLSv1.2", "http/1.1")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_tls11_client_is_refused(tls_server) -> None:
    port = tls_server[0]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would go down to 1.1 ...
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):  # ... the server must not
        await handshake(port, ctx)


async def test_new_cert_reaches_new_connections(tls_server, tmp_path: Path) -> None:
    port, reloader, old_der, old_pem = tls_server
    assert reloader.check() is False  # nothing changed yet

    new_pem, new_key, new_der = make_cert("second")
    install(tmp_path, new_pem, new_key)
    assert reloader.check() is True

    _, _, peer, body = await handshake(port, trusting(new_pem, tmp_path))
    assert peer == new_der != old_der
    assert body == b"hello"
    # The old cert is gone for new handshakes: a client pinned to it now fails.
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(port, trusting(old_pem, tmp_path))


async def test_half_replaced_pair_keeps_the_old_cert(tls_server, tmp_path: Path) -> None:
    # A naive load_cert_chain of a mismatched pair drops the key from the live context
    # ("no shared cipher" on every handshake after); the reloader must not do that.
    port, reloader, old_der, old_pem = tls_server
    new_pem, new_key, new_der = make_cert("second")
    (tmp_path / "tls.crt").write_bytes(new_pem)  # the key is still the old one
    assert reloader.check() is False
    _, _, peer, _ = await handshake(port, trusting(old_pem, tmp_path))
    assert peer == old_der

    (tmp_path / "tls.key").write_bytes(new_key)  # the pair is complete now
    assert reloader.check() is True
    _, _, peer, _ = await handshake(port, trusting(new_pem, tmp_path))
    assert peer == new_der


async def test_reloader_run_polls(tls_server, tmp_path: Path) -> None:
    port, reloader, _, _ = tls_server
    task = asyncio.create_task(reloader.run(interval=0.05))
    new_pem, new_key, new_der = make_cert("third")
    install(tmp_path, new_pem, new_key)
    try:
        for _ in range(100):
            _, _, peer, _ = await handshake(port, client_context(verify=False))
            if peer == new_der:
                break
            await asyncio.sleep(0.02)
        assert peer == new_der
    finally:
        task.cancel()


async def test_client_context_verifies_by_default(tls_server) -> None:
    port = tls_server[0]
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(port, client_context())
    version, _, _, body = await handshake(port, client_context(verify=False))
    assert body == b"hello"


def test_server_context_settings(tmp_path: Path) -> None:
    cert_pem, key_pem, _ = make_cert("x")
    cert, key = install(tmp_path, cert_pem, key_pem)
    ctx = server_context(cert, key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    names = {c["name"] for c in ctx.get_ciphers()}
    assert not any("CBC" in n or n.startswith("AES128-") for n in names if "TLS_" not in n)
    with pytest.raises(ssl.SSLError):
        server_context(cert, tmp_path / "tls.crt")  # the key file is not a key
