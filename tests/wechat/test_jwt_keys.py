"""KeyRing: issuing, verifying (algorithm pinned per key), rotation, JWKS, config errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from wxgated.wechat.jwt_keys import KeyRing, TokenError
from wxgated.wechat.settings import SettingsError

SECRET = "test-secret-0123456789-0123456789-abcdef"
SECRET2 = "second-secret-0123456789-0123456789-xyz"


def pem_private(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_public(key) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, sign=None) -> str:
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    sig = sign(head.encode()) if sign else b""
    return head + "." + b64url(sig)


def hs_ring(**kw) -> KeyRing:
    return KeyRing.from_config({"issuer": "wxgated", "ttl": "2h",
                                "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}], **kw})


def claims(**extra) -> dict:
    now = int(time.time())
    return {"iss": "wxgated", "sub": "o-1", "sid": "s-1", "iat": now, "exp": now + 600, **extra}


def reason(ring: KeyRing, token: str) -> str:
    with pytest.raises(TokenError) as err:
        ring.verify(token)
    return err.value.reason


def test_issue_then_verify_carries_identity_and_kid() -> None:
    ring = hs_ring()
    token, expires_in = ring.issue({"sub": "o-1", "sid": "s-1", "unionid": "u-1"})
    assert expires_in == 7200
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    got = ring.verify(token)
    assert (got["sub"], got["sid"], got["unionid"], got["iss"]) == ("o-1", "s-1", "u-1", "wxgated")
    assert got["exp"] - got["iat"] == 7200
    assert ring.verify(token) == got  # the cached path answers the same


def test_alg_none_is_rejected_with_or_without_kid() -> None:
    ring = hs_ring()
    assert reason(ring, forge({"alg": "none", "kid": "k1"}, claims())) == "bad signature"
    assert reason(ring, forge({"alg": "none"}, claims())) == "bad signature"
    assert reason(ring, forge({"alg": "None", "typ": "JWT"}, claims())) == "bad signature"


def test_hs256_signed_with_the_rsa_public_key_is_rejected(rsa_key) -> None:
    public_pem = pem_public(rsa_key).encode()
    ring = KeyRing.from_config({"keys": [
        {"kid": "r1", "alg": "RS256", "pem": pem_private(rsa_key)},
        {"kid": "h1", "alg": "HS256", "secret": SECRET},
    ]})

    def sign(msg: bytes) -> bytes:
        return hmac.new(public_pem, msg, hashlib.sha256).digest()

    for header in ({"alg": "HS256", "kid": "r1"}, {"alg": "HS256"}, {"alg": "HS256", "kid": "h1"}):
        assert reason(ring, forge(header, claims(), sign)) == "bad signature", header
    # and an RS-signed token presented under the HS key's kid is refused too
    rs_token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "h1"})
    assert reason(ring, rs_token) == "bad signature"
    good = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "r1"})
    assert ring.verify(good)["sub"] == "o-1"


def test_expired_and_leeway() -> None:
    ring = hs_ring()  # default leeway 30 s
    now = int(time.time())
    stale = jwt.encode(claims(iat=now - 700, exp=now - 100), SECRET, headers={"kid": "k1"})
    assert reason(ring, stale) == "expired"
    within = jwt.encode(claims(iat=now - 700, exp=now - 10), SECRET, headers={"kid": "k1"})
    assert ring.verify(within)["sub"] == "o-1"


def test_a_cached_token_still_expires() -> None:
    ring = hs_ring(leeway=0)
    token, _ = ring.issue({"sub": "o-1", "sid": "s"}, ttl=1)
    assert ring.verify(token)["sub"] == "o-1"
    time.sleep(1.1)
    assert reason(ring, token) == "expired"


def test_bad_signature_and_malformed() -> None:
    ring = hs_ring()
    token, _ = ring.issue({"sub": "o-1", "sid": "s"})
    head, payload, sig = token.split(".")
    evil = b64url(json.dumps({**claims(), "sub": "o-admin"}).encode())
    assert reason(ring, f"{head}.{evil}.{sig}") == "bad signature"
    other = jwt.encode(claims(), SECRET2, headers={"kid": "k1"})
    assert reason(ring, other) == "bad signature"
    assert reason(ring, jwt.encode(claims(), SECRET, headers={"kid": "zz"})) == "bad signature"
    assert reason(ring, "not-a-token") == "malformed"
    assert reason(ring, "a.b.c") == "malformed"
    assert reason(ring, "") == "missing"
    assert TokenError("expired").msg == "token expired"


def test_invalid_claims() -> None:
    ring = hs_ring(audience="mini-api")
    now = int(time.time())
    cases = {
        "wrong issuer": claims(iss="someone-else", aud="mini-api"),
        "wrong audience": claims(aud="other"),
        "missing sub": {k: v for k, v in claims(aud="mini-api").items() if k != "sub"},
        "not valid yet": claims(aud="mini-api", nbf=now + 3600),
    }
    for detail, payload in cases.items():
        with pytest.raises(TokenError) as err:
            ring.verify(jwt.encode(payload, SECRET, headers={"kid": "k1"}))
        assert err.value.reason == "invalid claims" and detail in err.value.msg, detail
    token, _ = ring.issue({"sub": "o", "sid": "s"})
    assert ring.verify(token)["aud"] == "mini-api"


def test_key_rotation_old_verifies_new_signs() -> None:
    old = hs_ring()
    old_token, _ = old.issue({"sub": "o-1", "sid": "s"})
    new = KeyRing.from_config({"keys": [{"kid": "k2", "alg": "HS512", "secret": SECRET * 2},
                                        {"kid": "k1", "alg": "HS256", "secret": SECRET}]})
    assert new.verify(old_token)["sub"] == "o-1"
    new_token, _ = new.issue({"sub": "o-2", "sid": "s"})
    assert jwt.get_unverified_header(new_token) == {"alg": "HS512", "kid": "k2", "typ": "JWT"}
    assert reason(old, new_token) == "bad signature"  # unknown kid on the old ring
    no_kid = jwt.encode(claims(), SECRET)  # tokens without kid try each key with its own alg
    assert new.verify(no_kid)["sub"] == "o-1"


def test_jwks_publishes_asymmetric_keys_that_verify(rsa_key, tmp_path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pem_file = tmp_path / "ec.pem"
    pem_file.write_text(pem_private(ec_key))
    cfg = {"keys": [{"kid": "ed", "alg": "EdDSA", "pem": pem_private(ed_key)},
                    {"kid": "ec", "alg": "ES256", "pem_file": str(pem_file)},
                    {"kid": "rs", "alg": "RS256", "pem": pem_public(rsa_key)},
                    {"kid": "hs", "alg": "HS256", "secret": SECRET}]}
    ring = KeyRing.from_config(cfg)
    doc = ring.jwks()
    assert [(k["kid"], k["alg"], k["use"]) for k in doc["keys"]] == [
        ("ed", "EdDSA", "sig"), ("ec", "ES256", "sig"), ("rs", "RS256", "sig")]
    assert all("d" not in k for k in doc["keys"])  # no private parts
    assert SECRET not in json.dumps(doc)
    token, _ = ring.issue({"sub": "o-9", "sid": "s"})
    jwk = jwt.PyJWK(doc["keys"][0])  # what a backend does with the published set
    assert jwt.decode(token, jwk.key, algorithms=["EdDSA"], issuer="wxgated")["sub"] == "o-9"
    ec_token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec"})
    rs_token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rs"})
    assert ring.verify(ec_token)["sub"] == ring.verify(rs_token)["sub"] == "o-1"


def test_verification_cache_is_bounded() -> None:
    ring = KeyRing.from_config({"cache_size": 2,
                                "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}]})
    tokens = [ring.issue({"sub": f"o{i}", "sid": "s"})[0] for i in range(5)]
    for t in tokens:
        ring.verify(t)
    assert len(ring._cache) == 2
    assert ring.verify(tokens[0])["sub"] == "o0"  # evicted tokens still verify


@pytest.mark.parametrize("key, fragment", [
    ({"kid": "a", "alg": "HS256", "secret": "short"}, "at least 32 bytes"),
    ({"kid": "a", "alg": "HS512", "secret": SECRET}, "at least 64 bytes"),
    ({"kid": "a", "alg": "none", "secret": SECRET}, "unsupported alg"),
    ({"kid": "a", "alg": "RS256"}, "needs pem or pem_file"),
    ({"kid": "a", "alg": "RS256", "pem_file": "/nonexistent/key.pem"}, "cannot read pem_file"),
    ({"kid": "a", "alg": "RS256", "pem": "-----BEGIN NOTHING-----"}, "not a PEM"),
])
def test_config_errors_are_precise(key, fragment) -> None:
    with pytest.raises(SettingsError) as err:
        KeyRing.from_config({"keys": [key]})
    assert fragment in err.value.msg
    assert err.value.path[:3] == ("jwt", "keys", 0)


def test_config_errors_about_key_kinds(rsa_key) -> None:
    with pytest.raises(SettingsError, match="EC P-256"):
        KeyRing.from_config({"keys": [{"kid": "a", "alg": "ES256", "pem": pem_private(rsa_key)}]})
    with pytest.raises(SettingsError, match="first key signs"):
        KeyRing.from_config({"keys": [{"kid": "a", "alg": "RS256", "pem": pem_public(rsa_key)}]})
    with pytest.raises(SettingsError, match="share a kid"):
        KeyRing.from_config({"keys": [{"kid": "a", "alg": "HS256", "secret": SECRET},
                                      {"kid": "a", "alg": "HS256", "secret": SECRET2}]})
    with pytest.raises(SettingsError, match="at least one key"):
        KeyRing.from_config({"keys": []})
    assert SECRET not in repr(hs_ring()) and SECRET not in repr(hs_ring().keys)
