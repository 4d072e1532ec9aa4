"""WeChat crypto helpers: decrypt reasons, signatures, the at-rest SecretBox."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wxgated.wechat.crypto import (
    WATERMARK_WINDOW,
    DecryptError,
    SecretBox,
    check_session_signature,
    decrypt_user_data,
    encrypt_user_data,
    push_signature_ok,
    raw_data_signature_ok,
)

APPID = "wx4f4bc4dec97d474b"
KEY = base64.b64encode(os.urandom(16)).decode()
IV = os.urandom(16)
IV64 = base64.b64encode(IV).decode()


def cbc(key_b64: str, plain: bytes, pad: bool = True) -> str:
    if pad:
        padder = padding.PKCS7(128).padder()
        plain = padder.update(plain) + padder.finalize()
    enc = Cipher(algorithms.AES(base64.b64decode(key_b64)), modes.CBC(IV)).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def reason(*args: str) -> str:
    with pytest.raises(DecryptError) as err:
        decrypt_user_data(*args)
    return err.value.reason


def test_round_trip_with_independently_encrypted_data() -> None:
    doc = {"openId": "o", "nickName": "微信用户",
           "watermark": {"timestamp": int(time.time()), "appid": APPID}}
    enc = cbc(KEY, json.dumps(doc, ensure_ascii=False).encode())
    assert decrypt_user_data(KEY, enc, IV64, APPID) == doc
    assert encrypt_user_data(KEY, doc, IV) == cbc(KEY, json.dumps(doc).encode())
    # "+" turned into " " by a careless query string still decrypts
    assert decrypt_user_data(KEY.replace("+", " "), enc.replace("+", " "), IV64, APPID) == doc


def test_each_failure_has_its_reason() -> None:
    good = cbc(KEY, json.dumps({"watermark": {"appid": APPID,
                                              "timestamp": int(time.time())}}).encode())
    short_key = base64.b64encode(os.urandom(24)).decode()
    assert reason("%%%", good, IV64, APPID) == "bad base64 in session_key"
    assert reason(KEY, "%%%", IV64, APPID) == "bad base64 in encryptedData"
    assert reason(short_key, good, IV64, APPID) == "session_key is not 16 bytes"
    assert reason(KEY, good, base64.b64encode(b"x" * 12).decode(), APPID) == "iv is not 16 bytes"
    assert "multiple of 16" in reason(KEY, base64.b64encode(b"abc").decode(), IV64, APPID)
    assert reason(KEY, cbc(KEY, b"\xff\xfe not json"), IV64, APPID) == STALE
    assert reason(KEY, cbc(KEY, b"[1, 2]"), IV64, APPID) == "decrypted data is not a JSON object"
    assert reason(KEY, cbc(KEY, b"{}"), IV64, APPID) == "watermark appid mismatch"
    assert reason(KEY, good, IV64, "wxsomeoneelse") == "watermark appid mismatch"


STALE = "session_key is out of date: log in again"


def stale(*args: str) -> bool:
    with pytest.raises(DecryptError) as err:
        decrypt_user_data(*args)
    return err.value.stale


def test_another_session_key_is_stale_a_wrong_iv_is_not() -> None:
    doc = {"openId": "o", "nickName": "n" * 40, "watermark": {"appid": APPID,
                                                              "timestamp": int(time.time())}}
    enc = cbc(KEY, json.dumps(doc).encode())
    other = base64.b64encode(os.urandom(16)).decode()
    assert reason(KEY, cbc(KEY, b"A" * 32, pad=False), IV64, APPID) == STALE
    for _ in range(20):  # random keys: bad padding, or (1 in 256) garbage that is no JSON
        key = base64.b64encode(os.urandom(16)).decode()
        assert stale(key, enc, IV64, APPID) and reason(key, enc, IV64, APPID) == STALE
    bad_iv = base64.b64encode(os.urandom(16)).decode()
    assert reason(KEY, enc, bad_iv, APPID) == "decrypted data is not JSON (wrong iv)"
    assert not stale(KEY, enc, bad_iv, APPID) and stale(other, enc, IV64, APPID)


def test_watermark_timestamp_window() -> None:
    now = time.time()

    def at(stamp: object) -> str:
        enc = cbc(KEY, json.dumps({"watermark": {"appid": APPID, "timestamp": stamp}}).encode())
        try:
            decrypt_user_data(KEY, enc, IV64, APPID, now=now)
        except DecryptError as err:
            return err.reason
        return "ok"

    assert at(int(now)) == at(int(now) - 299) == at(int(now) + 299) == "ok"
    assert at(int(now) - WATERMARK_WINDOW - 2).startswith("watermark timestamp outside")
    assert at(int(now) + WATERMARK_WINDOW + 2).startswith("watermark timestamp outside")
    assert at(None) == at("1700000000") == at(True) == "watermark without timestamp"


def test_raw_data_signature() -> None:
    raw = '{"nickName":"Band","gender":1}'
    sig = hashlib.sha1((raw + KEY).encode()).hexdigest()
    assert raw_data_signature_ok(raw, sig, KEY)
    assert raw_data_signature_ok(raw, sig.upper(), KEY)
    assert not raw_data_signature_ok(raw + " ", sig, KEY)
    assert not raw_data_signature_ok(raw, sig, base64.b64encode(os.urandom(16)).decode())
    assert not raw_data_signature_ok(raw, "签名", KEY)  # non-ASCII input is just wrong


def test_check_session_signature_keys_with_the_base64_text() -> None:
    expected = hmac.new(KEY.encode(), b"", hashlib.sha256).hexdigest()
    assert check_session_signature(KEY) == expected
    assert expected != hmac.new(base64.b64decode(KEY), b"", hashlib.sha256).hexdigest()


def test_push_signature() -> None:
    token, ts, nonce = "tok", "1700000000", "12345"
    sig = hashlib.sha1("".join(sorted([token, ts, nonce])).encode()).hexdigest()
    assert push_signature_ok(token, ts, nonce, sig)
    assert not push_signature_ok(token, ts, "99999", sig)
    assert not push_signature_ok("other", ts, nonce, sig)
    empty = hashlib.sha1("".join(sorted(["", ts, nonce])).encode()).hexdigest()
    assert not push_signature_ok("", ts, nonce, empty)  # an unset token verifies nothing


def test_secret_box() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.encrypt(b"session-key", b"sid-1")
    assert sealed.startswith("g1:") and "session-key" not in sealed
    assert box.decrypt(sealed, b"sid-1") == b"session-key"
    assert box.encrypt(b"session-key", b"sid-1") != sealed  # fresh nonce every time
    for bad in (lambda: box.decrypt(sealed, b"sid-2"),
                lambda: SecretBox(os.urandom(32)).decrypt(sealed, b"sid-1"),
                lambda: box.decrypt(sealed[:-4] + "AAAA", b"sid-1"),
                lambda: box.decrypt("plain", b"sid-1")):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        SecretBox(b"short")
    assert "key" in repr(box) and sealed not in repr(box)
