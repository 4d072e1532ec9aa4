"""Black-box: discovered targets spoken to over TLS (`scheme: https`) with the upstream's
`tls` settings. A real TLS upstream (aiohttp, a leaf certificate from a test CA naming
only `api.internal`, never its address) is registered in the Nacos stand-in by IP and
port, as a registry would; so verification must use `tls.ca_file` and
`tls.server_name`, and the active health check must probe it the same way.
"""

from __future__ import annotations

import datetime
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.nacos_standin import NacosStandin, host
from tests.support.tls import TLSApp, echo_app

NAME = "api.internal"


def cert(cn: str, issuer: tuple[Any, x509.Certificate] | None = None
         ) -> tuple[bytes, bytes, Any, x509.Certificate]:
    """(cert PEM, key PEM, key, cert): a CA when `issuer` is None, else a leaf for NAME."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[1].subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None),
                              critical=True))
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
    signed = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return signed.public_bytes(serialization.Encoding.PEM), pem, key, signed


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TLSApp, Path]]:
    d = tmp_path_factory.mktemp("pki")
    ca_pem, _, ca_key, ca_cert = cert("test CA")
    leaf_pem, leaf_key, _, _ = cert(NAME, issuer=(ca_key, ca_cert))
    (d / "ca.pem").write_bytes(ca_pem)
    (d / "other-ca.pem").write_bytes(cert("another CA")[0])
    (d / "leaf.pem").write_bytes(leaf_pem)
    (d / "leaf.key").write_bytes(leaf_key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "leaf.pem", d / "leaf.key")
    app = TLSApp(echo_app(), ctx)
    yield app, d
    app.stop()


@pytest.fixture
def nacos(tls_upstream: tuple[TLSApp, Path]) -> Iterator[NacosStandin]:
    server = NacosStandin().start()
    server.set_hosts("secure-api", [host("127.0.0.1", tls_upstream[0].port)])
    yield server
    server.close()


def pool(nacos: NacosStandin, **tls: Any) -> dict[str, Any]:
    return {"discovery": {"nacos": {"server": nacos.url, "service": "secure-api"}},
            "scheme": "https", "tls": tls, "retries": {"attempts": 1},
            "health_check": {"path": "/healthz", "interval": "300ms", "timeout": "250ms",
                             "unhealthy_after": 1, "healthy_after": 1}}


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_discovered_https_targets_use_the_upstreams_tls(
        gateway: Any, nacos: NacosStandin, tls_upstream: tuple[TLSApp, Path]) -> None:
    up, pki = tls_upstream
    names = ("good", "nosni", "wrongca", "noverify")
    gw = gateway({
        "server": {"discovery_ready_timeout": "2s"},
        "upstreams": {
            "good": pool(nacos, ca_file=str(pki / "ca.pem"), server_name=NAME),
            "nosni": pool(nacos, ca_file=str(pki / "ca.pem")),  # checked against the IP
            "wrongca": pool(nacos, ca_file=str(pki / "other-ca.pem"), server_name=NAME),
            "noverify": pool(nacos, verify=False)},
        "routes": [{"name": n, "match": {"path": f"/{n}/*rest"},
                    "filters": [{"strip_prefix": 1}], "upstream": n} for n in names]})
    status, doc = get(gw.url + "/good/hello")
    assert (status, doc["tls"], doc["path"]) == (200, True, "/hello")
    assert doc["headers"]["host"] == f"{NAME}:{up.port}"  # the service, not the address
    assert get(gw.url + "/noverify/x")[1]["headers"]["host"] == f"127.0.0.1:{up.port}"
    assert get(gw.url + "/noverify/x")[0] == 200
    with urllib.request.urlopen(gw.admin + "/-/upstreams", timeout=5) as r:
        view = json.loads(r.read())
    assert [t["url"] for t in view["good"]["targets"]] == [f"https://127.0.0.1:{up.port}"]
    time.sleep(1.0)  # a few health rounds, each over TLS with the upstream's settings
    with urllib.request.urlopen(gw.admin + "/-/upstreams", timeout=5) as r:
        view = json.loads(r.read())
    def failed_checks(name: str) -> int:
        return int(view[name]["targets"][0]["health"]["failed_checks"])

    assert failed_checks("good") == failed_checks("noverify") == 0
    # the probe verifies as the proxy does: without server_name the certificate is
    # checked against the IP, and another CA is another CA
    assert failed_checks("nosni") >= 2 and failed_checks("wrongca") >= 2
    assert get(gw.url + "/good/again")[0] == 200
    for name in ("nosni", "wrongca"):  # verification applies to discovered targets too
        status, doc = get(gw.url + f"/{name}/x")
        assert (status, doc["code"]) == (502, 502), name


def test_scheme_on_static_targets_is_a_config_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "routes.yaml"
    cfg.write_text("version: 1\nupstreams:\n  api:\n    targets: [{url: 'http://127.0.0.1:1'}]\n"
                   "    scheme: https\nroutes: []\n")
    out = subprocess.run([sys.executable, "-m", "wxgated", "check", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"{cfg}:5:13: scheme applies to discovered targets" in out.stderr
