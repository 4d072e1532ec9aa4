"""Safe-mode push crypto, push body parsing and the replay guard, as units."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wxgated.http.message import HTTPError
from wxgated.state import StateBackend
from wxgated.state.memory import MemoryState
from wxgated.wechat.push_body import PushBodyError, body_format, json_to_dict, xml_to_dict
from wxgated.wechat.push_crypto import (
    PushCryptoError,
    aes_key,
    decrypt_message,
    encrypt_message,
    msg_signature,
    msg_signature_ok,
)
from wxgated.wechat.replay import ReplayGuard
from wxgated.wechat.settings import SettingsError, WeChatSettings

# WeChat's own test vector, from the decryption example that ships with its message
# encryption sample code (WXBizMsgCrypt): token, EncodingAESKey, appid, timestamp,
# nonce, msg_signature and the Encrypt field of a pushed text message.
SAMPLE_TOKEN = "spamtest"
SAMPLE_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SAMPLE_APPID = "wx2c2769f8efd9abc2"
SAMPLE_TIMESTAMP = "1409735669"
SAMPLE_NONCE = "1320562132"
SAMPLE_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
SAMPLE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PG"
    "HQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6"
    "tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp"
    "3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhv"
    "Ql+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)
SAMPLE_MESSAGE = (
    b"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    b"<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    b"<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n"
    b"<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"
)


def test_wechat_sample_vector_verifies_and_decrypts() -> None:
    assert msg_signature(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, SAMPLE_NONCE,
                         SAMPLE_ENCRYPT) == SAMPLE_MSG_SIGNATURE
    assert msg_signature_ok(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT,
                            SAMPLE_MSG_SIGNATURE.upper())
    message = decrypt_message(aes_key(SAMPLE_AES_KEY), SAMPLE_ENCRYPT, SAMPLE_APPID)
    assert message == SAMPLE_MESSAGE
    assert xml_to_dict(message) == {
        "ToUserName": "gh_10f6c3c3ac5a", "FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        "CreateTime": "1409735668", "MsgType": "text", "Content": "abcdteT",
        "MsgId": "6054768590064713728"}


def test_sample_refuses_another_appid_and_a_changed_field() -> None:
    with pytest.raises(PushCryptoError, match="appid"):
        decrypt_message(aes_key(SAMPLE_AES_KEY), SAMPLE_ENCRYPT, "wx0000000000000000")
    assert not msg_signature_ok(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, "1320562133", SAMPLE_ENCRYPT,
                                SAMPLE_MSG_SIGNATURE)
    assert not msg_signature_ok("", SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT,
                                SAMPLE_MSG_SIGNATURE)


def test_encrypt_round_trip_pads_to_32_byte_blocks() -> None:
    key = aes_key(SAMPLE_AES_KEY)
    for size in (0, 11, 12, 43, 44, 1000):  # 20 + size + 18 crosses block edges
        msg = b"m" * size
        sealed = encrypt_message(key, msg, SAMPLE_APPID)
        raw = base64.b64decode(sealed)
        plain = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor().update(raw)
        pad = plain[-1]
        assert 1 <= pad <= 32 and len(raw) % 32 == 0 and plain[-pad:] == bytes([pad]) * pad
        assert decrypt_message(key, sealed, SAMPLE_APPID) == msg


def _seal_raw(key: bytes, plain: bytes) -> str:
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def test_bad_padding_length_and_base64_are_refused() -> None:
    key = aes_key(SAMPLE_AES_KEY)
    body = b"r" * 16 + struct.pack(">I", 2) + b"hi" + SAMPLE_APPID.encode()
    body += b"\x00" * (32 - len(body) % 32)  # pad value 0: invalid
    with pytest.raises(PushCryptoError, match="padding"):
        decrypt_message(key, _seal_raw(key, body), SAMPLE_APPID)
    uneven = b"r" * 16 + struct.pack(">I", 2) + b"hi" + SAMPLE_APPID.encode()
    uneven += b"\x07" * (29 - len(uneven) % 32) + b"\x01\x02\x03"  # ends in 3, not 3 x 3
    with pytest.raises(PushCryptoError, match="padding"):
        decrypt_message(key, _seal_raw(key, uneven), SAMPLE_APPID)
    long = b"r" * 16 + struct.pack(">I", 999) + b"hi" + bytes([26]) * 26
    with pytest.raises(PushCryptoError, match="length"):
        decrypt_message(key, _seal_raw(key, long), SAMPLE_APPID)
    with pytest.raises(PushCryptoError, match="base64"):
        decrypt_message(key, "not base64!", SAMPLE_APPID)
    with pytest.raises(PushCryptoError, match="multiple"):
        decrypt_message(key, base64.b64encode(b"x" * 20).decode(), SAMPLE_APPID)


@pytest.mark.parametrize("bad", ["", "short", SAMPLE_AES_KEY + "A", "!" * 43])
def test_aes_key_must_be_43_base64_characters(bad: str) -> None:
    with pytest.raises(ValueError):
        aes_key(bad)


def test_xml_parsing_refuses_entities_and_keeps_structure() -> None:
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><A>&a;</A></xml>'
    with pytest.raises(PushBodyError):
        xml_to_dict(bomb)
    with pytest.raises(PushBodyError):
        xml_to_dict(b"<xml><A>")
    doc = xml_to_dict(b"<xml><A> 1 </A><L><i>x</i><i>y</i></L><E/></xml>")
    assert doc == {"A": "1", "L": {"i": ["x", "y"]}, "E": ""}


def test_body_format_goes_by_the_first_character() -> None:
    assert body_format(b"  <xml/>") == "xml"
    assert body_format(b'\n{"a": 1}') == "json"
    with pytest.raises(PushBodyError):
        body_format(b"Encrypt=abc")
    with pytest.raises(PushBodyError):
        json_to_dict(b"[1]")


async def test_replay_guard_window_and_nonce_cache() -> None:
    state = MemoryState()
    guard = ReplayGuard(state, "wxapp", 300, clock=lambda: 1_000_000.0)
    guard.check_age("1000299")
    guard.check_age("999701")
    for bad in ("999699", "1000301", "", "abc"):
        with pytest.raises(HTTPError) as err:
            guard.check_age(bad)
        assert err.value.status == 403
    key = await guard.claim("1000000", "n1")
    with pytest.raises(HTTPError) as err:
        await guard.claim("1000000", "n1")
    assert err.value.status == 403
    assert await guard.claim("1000000", "n2")  # another nonce is fine
    assert key is not None and 599 < (await state.ttl(key) or 0) <= 600
    await guard.release(key)  # an undelivered push: WeChat's retry may come through
    assert await guard.claim("1000000", "n1") == key


async def test_replay_guard_window_off() -> None:
    guard = ReplayGuard(MemoryState(), "wxapp", 0, clock=lambda: 1_000_000.0)
    guard.check_age("1")  # no window
    await guard.claim("1", "n")
    with pytest.raises(HTTPError):
        await guard.claim("1", "n")  # the nonce cache still works


async def test_nonce_cache_on_both_backends(state_backend: StateBackend) -> None:
    """Two guards on one backend stand for two gateway instances sharing it."""
    first = ReplayGuard(state_backend, "wxapp", 60)
    second = ReplayGuard(state_backend, "wxapp", 60)
    key = await first.claim("1700000000", "abc")
    with pytest.raises(HTTPError) as err:
        await second.claim("1700000000", "abc")
    assert err.value.status == 403
    assert key is not None and 0 < (await state_backend.ttl(key) or 0) <= 120
    await second.release(key)
    assert await second.claim("1700000000", "abc") == key
    other_app = ReplayGuard(state_backend, "wxother", 60)
    assert await other_app.claim("1700000000", "abc")  # nonces are per appid


def test_settings_read_the_push_keys() -> None:
    base = {"appid": "wxa", "secret": "s", "push_token": "t"}
    plain = WeChatSettings.from_config(base)
    assert plain.push_aes_key is None and plain.push_max_age == 300
    safe = WeChatSettings.from_config({**base, "push_aes_key": SAMPLE_AES_KEY,
                                       "push_max_age": 0})
    assert safe.push_aes_key == aes_key(SAMPLE_AES_KEY) and safe.push_max_age == 0
    assert SAMPLE_AES_KEY not in repr(safe)
    with pytest.raises(SettingsError) as err:
        WeChatSettings.from_config({**base, "push_aes_key": SAMPLE_AES_KEY[:-1]})
    assert err.value.path == ("wechat", "push_aes_key")
