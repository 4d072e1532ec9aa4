"""Issue 3 black-box: WeChat identity through a real `wxgated run` against the stand-in.

One memory-backed gateway serves the whole module: login → upstream identity, forged
identity headers and tokens, logout, JWKS, the admin access_token, and no secret in any
response or output line. The token-fetch bursts and Redis live in test_e2e_identity_redis.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.support.e2e_identity_harness import (
    APPID,
    HS_KEYS,
    JWT_SECRET,
    SECRET,
    Client,
    StandIn,
    assert_no_secrets,
    base_config,
    header_values,
    upstream_app,
)
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.servers import ThreadedApp, served


def pem_keys(tmp: Path) -> tuple[Path, Path, ec.EllipticCurvePrivateKey]:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fmt = (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
           serialization.NoEncryption())
    ec_path, rsa_path = tmp / "es256.pem", tmp / "rs256.pem"
    ec_path.write_bytes(ec_key.private_bytes(*fmt))
    rsa_path.write_bytes(rsa_key.private_bytes(*fmt))
    return ec_path, rsa_path, ec_key


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    return pem_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def gw(standin: StandIn, upstream: ThreadedApp, keys: Any,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Memory state; ES256 signs, RS256 and HS256 verify (rotation-style key list)."""
    ec_path, rsa_path, _ = keys
    cfg = base_config(standin.url, upstream.url, [
        {"kid": "es1", "alg": "ES256", "pem_file": str(ec_path)},
        {"kid": "rs1", "alg": "RS256", "pem_file": str(rsa_path)}, *HS_KEYS])
    proc = GatewayProcess(tmp_path_factory.mktemp("gw"), cfg).start()
    yield proc
    proc.stop()


def encrypt_user_data(session_key: str, doc: dict[str, Any]) -> tuple[str, str]:
    """What WeChat does to user data: AES-128-CBC, PKCS#7, key = b64 session_key."""
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(doc).encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(base64.b64decode(session_key)), modes.CBC(iv)).encryptor()
    data = enc.update(plain) + enc.finalize()
    return base64.b64encode(data).decode(), base64.b64encode(iv).decode()


# -- identity reaches the upstream, and only from a verified token ----------------------


async def test_login_then_upstream_sees_the_verified_openid(gw: GatewayProcess,
                                                            standin: StandIn,
                                                            client: Client) -> None:
    token, _ = await client.login(gw.url, standin.wx, "o-alice", unionid="u-alice")
    status, doc, _ = await client.call("GET", gw.url + "/api/whoami", token=token)
    assert status == 200
    assert header_values(doc, "x-wx-openid") == ["o-alice"]
    assert header_values(doc, "x-wx-unionid") == ["u-alice"]
    # no token → 401 envelope, nothing reaches the upstream
    status, doc, headers = await client.call("GET", gw.url + "/api/whoami")
    assert (status, doc["code"], doc["msg"]) == (401, 401, "missing token")
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_client_sent_identity_headers_never_reach_the_upstream(
        gw: GatewayProcess, standin: StandIn, client: Client) -> None:
    token, _ = await client.login(gw.url, standin.wx, "o-bob")
    spoof = {"X-WX-OpenID": "o-evil", "X-WX-UnionID": "u-evil", "x-wx-role": "admin"}
    status, doc, _ = await client.call("GET", gw.url + "/api/x", token=token, headers=spoof)
    assert status == 200
    assert header_values(doc, "x-wx-openid") == ["o-bob"]
    assert header_values(doc, "x-wx-unionid") == []  # bob has none; the forged one is gone
    assert header_values(doc, "x-wx-role") == []
    # ...on a route without jwt_auth too
    status, doc, _ = await client.call("GET", gw.url + "/pub/x", headers=spoof)
    assert status == 200
    assert not [k for k, _ in doc["headers"] if k.startswith("x-wx-")]
    assert "o-evil" not in json.dumps(doc)
    # a bad token with forged headers is refused, not passed on as anonymous
    status, doc, _ = await client.call("GET", gw.url + "/api/x", token=token[:-4] + "AAAA",
                                       headers=spoof)
    assert (status, doc["msg"]) == (401, "bad signature")


async def test_logout_kills_the_token_at_once(gw: GatewayProcess, standin: StandIn,
                                              client: Client) -> None:
    token, _ = await client.login(gw.url, standin.wx, "o-carol")
    other, _ = await client.login(gw.url, standin.wx, "o-dave")
    assert (await client.call("GET", gw.url + "/api/me", token=token))[0] == 200
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/logout", token=token)
    assert (status, doc["code"]) == (200, 0)
    # the very next request, no waiting: the token is dead everywhere it is checked
    status, doc, headers = await client.call("GET", gw.url + "/api/me", token=token)
    assert (status, doc["msg"]) == (401, "token revoked")
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert (await client.call("POST", gw.url + "/auth/wx/refresh", token=token))[0] == 401
    assert (await client.call("POST", gw.url + "/auth/wx/phone", {"code": "p"},
                              token=token))[0] == 401
    # another user's session is untouched
    status, doc, _ = await client.call("GET", gw.url + "/api/me", token=other)
    assert status == 200 and header_values(doc, "x-wx-openid") == ["o-dave"]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """A JWT made by hand, as an attacker would (pyjwt refuses to make these)."""
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = hmac.new(hmac_key, head.encode(), hashlib.sha256).digest() if hmac_key else b""
    return head + "." + b64url(sig)


async def test_forged_tokens_are_refused_and_rotated_keys_verify(
        gw: GatewayProcess, standin: StandIn, client: Client, keys: Any) -> None:
    token, _ = await client.login(gw.url, standin.wx, "o-gina")
    claims = jwt.decode(token, options={"verify_signature": False})  # a live session's sid
    forged = {**claims, "sub": "o-gina"}
    rsa_public = keys[1].read_bytes()
    rsa_public = serialization.load_pem_private_key(rsa_public, None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    cases = {
        "alg none": forge({"alg": "none", "typ": "JWT", "kid": "es1"}, forged, None),
        "alg none, no kid": forge({"alg": "none", "typ": "JWT"}, forged, None),
        # key confusion: HMAC keyed with the RSA public key, which anyone can fetch
        "HS256 with the RS256 public key": forge({"alg": "HS256", "kid": "rs1"}, forged,
                                                 rsa_public),
        "HS256 claiming the ES key": forge({"alg": "HS256", "kid": "es1"}, forged,
                                           JWT_SECRET.encode()),
        "unknown kid": forge({"alg": "HS256", "kid": "nope"}, forged, JWT_SECRET.encode()),
    }
    for what, bad in cases.items():
        status, doc, headers = await client.call("GET", gw.url + "/api/me", token=bad)
        assert (status, doc["msg"].split(":")[0]) == (401, "bad signature"), what
        assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    status, doc, _ = await client.call("GET", gw.url + "/api/me", token="not.a.jwt")
    assert (status, doc["msg"].split(":")[0]) == (401, "malformed token")
    expired = jwt.encode({**claims, "exp": int(time.time()) - 120}, JWT_SECRET,
                         algorithm="HS256", headers={"kid": "hs1"})
    status, doc, _ = await client.call("GET", gw.url + "/api/me", token=expired)
    assert (status, doc["msg"].split(":")[0]) == (401, "token expired")
    wrong_iss = jwt.encode({**claims, "iss": "someone-else"}, JWT_SECRET, algorithm="HS256",
                           headers={"kid": "hs1"})
    status, doc, _ = await client.call("GET", gw.url + "/api/me", token=wrong_iss)
    assert (status, doc["msg"].split(":")[0]) == (401, "invalid claims")
    # rotation: a token signed by a key that is no longer first still verifies
    old = jwt.encode(claims, JWT_SECRET, algorithm="HS256", headers={"kid": "hs1"})
    status, doc, _ = await client.call("GET", gw.url + "/api/me", token=old)
    assert status == 200 and header_values(doc, "x-wx-openid") == ["o-gina"]


# -- JWKS and the admin access_token ----------------------------------------------------


async def test_jwks_publishes_the_public_keys_and_they_verify_tokens(
        gw: GatewayProcess, standin: StandIn, client: Client, keys: Any) -> None:
    status, doc, headers = await client.call("GET", gw.url + "/.well-known/jwks.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    by_kid = {k["kid"]: k for k in doc["keys"]}
    assert set(by_kid) == {"es1", "rs1"}  # the HMAC key is secret: never published
    assert (by_kid["es1"]["kty"], by_kid["es1"]["crv"]) == ("EC", "P-256")
    assert (by_kid["rs1"]["kty"], by_kid["rs1"]["n"] != "") == ("RSA", True)
    for k in doc["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(k), "private part published"
    published = jwt.PyJWK(by_kid["es1"], "ES256").key
    assert published.public_numbers() == keys[2].public_key().public_numbers()

    token, _ = await client.login(gw.url, standin.wx, "o-erin")
    head = jwt.get_unverified_header(token)
    assert (head["alg"], head["kid"]) == ("ES256", "es1")  # the first key signs
    claims = jwt.decode(token, published, algorithms=["ES256"], issuer="wxgated")
    assert claims["sub"] == "o-erin" and claims["sid"] and claims["exp"] > time.time()


async def test_admin_access_token_is_served_on_admin_only(gw: GatewayProcess,
                                                          standin: StandIn,
                                                          client: Client) -> None:
    status, doc, _ = await client.call("GET", gw.admin + "/-/wechat/access_token")
    assert status == 200
    token = doc["access_token"]
    assert standin.wx.token_ok(token)  # a real, current token from WeChat
    fetched = standin.wx.calls["stable_token"] + standin.wx.calls["token"]
    status, again, _ = await client.call("GET", gw.admin + "/-/wechat/access_token")
    assert again["access_token"] == token
    assert standin.wx.calls["stable_token"] + standin.wx.calls["token"] == fetched  # cached
    status, doc, _ = await client.call("GET", gw.url + "/-/wechat/access_token")
    assert (status, doc["code"]) == (404, 404)
    assert token.encode() not in client.seen[-1]


# -- no secret anywhere over a whole session --------------------------------------------


async def test_no_session_key_or_appsecret_in_responses_or_output(
        gw: GatewayProcess, standin: StandIn, client: Client) -> None:
    wx = standin.wx
    token, key = await client.login(gw.url, wx, "o-frank", unionid="u-frank")
    user = {"openId": "o-frank", "nickName": "Frank",
            "watermark": {"appid": APPID, "timestamp": int(time.time())}}
    enc, iv = encrypt_user_data(key, user)
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/decrypt",
                                       {"encryptedData": enc, "iv": iv}, token)
    assert (status, doc["data"]) == (200, user)
    raw = json.dumps({"nickName": "Frank"})
    signed = {"encryptedData": enc, "iv": iv, "rawData": raw,
              "signature": hashlib.sha1((raw + key).encode()).hexdigest()}
    assert (await client.call("POST", gw.url + "/auth/wx/decrypt", signed, token))[0] == 200
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/decrypt",
                                       {**signed, "signature": "0" * 40}, token)
    assert (status, doc["msg"]) == (400, "rawData signature mismatch")
    # failures are where secrets like to leak: bad iv, wrong appid, a used code
    bad_iv = base64.b64encode(os.urandom(16)).decode()
    assert (await client.call("POST", gw.url + "/auth/wx/decrypt",
                              {"encryptedData": enc, "iv": bad_iv}, token))[0] == 400
    enc2, iv2 = encrypt_user_data(key, {**user, "watermark": {"appid": "wxother"}})
    assert (await client.call("POST", gw.url + "/auth/wx/decrypt",
                              {"encryptedData": enc2, "iv": iv2}, token))[0] == 400
    wx.add_phone_code("ph-frank", phone="13900001111")
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/phone", {"code": "ph-frank"},
                                       token)
    assert status == 200 and doc["data"]["purePhoneNumber"] == "13900001111"
    assert (await client.call("POST", gw.url + "/auth/wx/phone", {"code": "ph-frank"},
                              token))[0] == 400  # a used phone code
    status, doc, _ = await client.call("POST", gw.url + "/auth/wx/refresh", token=token)
    assert status == 200
    assert (await client.call("POST", gw.url + "/auth/wx/login", {"code": "nope"}))[0] == 401
    wx.fail_next(10)
    assert (await client.call("POST", gw.url + "/auth/wx/login", {"code": "busy"}))[0] == 503
    assert (await client.call("POST", gw.url + "/auth/wx/logout", token=token))[0] == 200
    metrics = gw.metrics()
    for api, errcode in (("jscode2session", "0"), ("jscode2session", "40029"),
                         ("jscode2session", "-1"), ("getuserphonenumber", "0")):
        assert metric_value(metrics, "wxgated_wechat_api_requests_total", api=api,
                            errcode=errcode) >= 1, (api, errcode)
    await asyncio.sleep(0.3)  # let the access log flush
    assert gw.log_lines(), "the gateway wrote no access log at all"
    assert_no_secrets([SECRET, key, JWT_SECRET], [gw.stdout(), gw.stderr()], client.seen)
