"""TLS contexts: the public listener's (with hot certificate reload) and upstream clients'.

Certificate reload works on the *live* context: `SSLContext.load_cert_chain` swaps the
chain inside the SSL_CTX, and every handshake after that copies the new chain (each
connection's SSL object takes the context's certificate when it is created), while
connections already established keep theirs. So nothing that holds the context (the
asyncio server) has to be rebuilt.

The one danger is a half-replaced pair: certbot and friends write the cert and the key in
two steps, and OpenSSL drops the private key when a new certificate does not match it, so
a failed load could leave the live context unable to handshake. We therefore read both
files once, check the pair in a scratch context, and only then load the very same bytes
into the live one (through memfds, so the key never lands on disk a second time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

ALPN = ["http/1.1"]

# Mozilla "intermediate" (TLS 1.2 part; TLS 1.3 suites are not affected by set_ciphers):
# forward secrecy and AEAD only. WeChat's clients all speak these.
CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
))

PathLike = str | os.PathLike[str]


def server_context(cert: PathLike, key: PathLike) -> ssl.SSLContext:
    """Context for the public listener: TLS >= 1.2, ALPN http/1.1, no renegotiation."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(ALPN)
    ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    return ctx


def client_context(
    verify: bool = True,
    ca_file: PathLike | None = None,
    *,
    cert: PathLike | None = None,
    key: PathLike | None = None,
) -> ssl.SSLContext:
    """Context for TLS to upstreams. Verification (chain and host name) is on by default;
    `ca_file` replaces the system store (a private CA); `cert`/`key` add a client
    certificate for upstreams that want mutual TLS."""
    if ca_file is not None:
        ctx = ssl.create_default_context(cafile=os.fspath(ca_file))
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key) if key is not None else None)
    return ctx


def _signature(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextlib.contextmanager
def _in_memory(data: bytes, name: str) -> Iterator[str]:
    """A path OpenSSL can open that holds `data` without writing it to a filesystem."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


class CertReloader:
    """Watches the cert and key files and loads a changed pair into the same context.

    Call `check()` periodically (or from the config reloader); `run()` does it on a
    timer. A pair that does not load (half-written, mismatched) is logged and retried on
    the next check, and the context keeps serving the previous certificate meanwhile.
    """

    def __init__(
        self, cert: PathLike, key: PathLike, context: ssl.SSLContext | None = None
    ) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self._sig = self._current_signature()
        self.context = context if context is not None else server_context(cert, key)
        self._failed_sig: tuple[object, ...] | None = None

    def _current_signature(self) -> tuple[object, ...] | None:
        try:
            return (_signature(self.cert), _signature(self.key))
        except OSError:
            return None

    def check(self) -> bool:
        """Reload when either file changed; True when a new chain went live."""
        sig = self._current_signature()
        if sig is None or sig == self._sig:
            return False
        try:
            cert_pem = self.cert.read_bytes()
            key_pem = self.key.read_bytes()
            with _in_memory(cert_pem, "cert") as cert_path, _in_memory(key_pem, "key") as key_path:
                scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                scratch.load_cert_chain(cert_path, key_path)
                self.context.load_cert_chain(cert_path, key_path)
        except (OSError, ssl.SSLError) as exc:
            if sig != self._failed_sig:
                log.warning("TLS certificate %s not reloaded (keeping the old one): %s",
                            self.cert, exc)
                self._failed_sig = sig
            return False
        self._sig = sig
        self._failed_sig = None
        log.info("TLS certificate %s reloaded", self.cert)
        return True

    def retarget(self, cert: PathLike, key: PathLike) -> bool:
        """Follow `server.tls` to other files on reload: the listener keeps its context,
        so a new pair at new paths goes live like a renewed one. True when it did."""
        if Path(cert) == self.cert and Path(key) == self.key:
            return False
        self.cert, self.key = Path(cert), Path(key)
        self._sig = None  # whatever is there now differs from what is loaded
        return self.check()

    async def run(self, interval: float = 5.0) -> None:
        """Poll every `interval` seconds until cancelled (stat() only, so cheap)."""
        while True:
            await asyncio.sleep(interval)
            self.check()
