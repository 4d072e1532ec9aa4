"""WeChat's cryptography (WeChat's server API documentation) and the gateway's own at-rest encryption.

Everything that compares a client-supplied signature uses `hmac.compare_digest`, so the
time a check takes says nothing about how much of a forged signature was right.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# How far a watermark's timestamp may lie from now, either way (docs/CONFIG.md, decrypt):
# WeChat stamps the data when the user hands it out, so old data is a replay.
WATERMARK_WINDOW = 300.0


class DecryptError(ValueError):
    """Encrypted user data that cannot be trusted; `reason` is safe to show a client.

    `stale` marks data that does not decrypt with the session_key we hold: the user has
    logged in again elsewhere (WeChat issued a new session_key), so only a new login helps.
    """

    def __init__(self, reason: str, stale: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stale = stale


def _b64(value: str, what: str) -> bytes:
    # Mini programs that put these values in a query string get "+" turned into " ".
    try:
        return base64.b64decode(value.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError, AttributeError):
        raise DecryptError(f"bad base64 in {what}") from None


def decrypt_user_data(
    session_key_b64: str, encrypted_b64: str, iv_b64: str, appid: str,
    now: float | None = None, window: float = WATERMARK_WINDOW,
) -> dict[str, Any]:
    """Decrypt wx.getUserInfo / open-data payloads: AES-128-CBC, PKCS#7 padding.

    The watermark check matters: without it, data encrypted for another mini program
    (with a session_key the attacker controls there) would be accepted here, and old
    data (a captured payload) could be replayed forever.
    """
    key = _b64(session_key_b64, "session_key")
    if len(key) != 16:
        raise DecryptError("session_key is not 16 bytes")
    iv = _b64(iv_b64, "iv")
    if len(iv) != 16:
        raise DecryptError("iv is not 16 bytes")
    data = _b64(encrypted_b64, "encryptedData")
    if not data or len(data) % 16:
        raise DecryptError("encryptedData length is not a multiple of 16 bytes")
    doc = _parse(_cbc_decrypt(key, iv, data))
    _check_watermark(doc, appid, time.time() if now is None else now, window)
    return doc


def _cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """The unpadded plaintext; bad padding means another key (a stale session_key)."""
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptError("session_key is out of date: log in again", stale=True) from None


def _parse(plain: bytes) -> dict[str, Any]:
    """The JSON object; garbage with valid padding is a wrong key too, unless only the
    first block is garbled, which is what a wrong iv does in CBC (a client bug: 400)."""
    try:
        doc = json.loads(plain)
    except (UnicodeDecodeError, ValueError):
        if _tail_is_text(plain):
            raise DecryptError("decrypted data is not JSON (wrong iv)") from None
        raise DecryptError("session_key is out of date: log in again", stale=True) from None
    if not isinstance(doc, dict):
        raise DecryptError("decrypted data is not a JSON object")
    return doc


def _tail_is_text(plain: bytes) -> bool:
    try:
        tail = plain[16:].decode()
    except UnicodeDecodeError:
        return False
    return tail.rstrip().endswith("}")


def _check_watermark(doc: dict[str, Any], appid: str, now: float, window: float) -> None:
    watermark = doc.get("watermark")
    if not isinstance(watermark, dict) or watermark.get("appid") != appid:
        raise DecryptError("watermark appid mismatch")
    stamp = watermark.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        raise DecryptError("watermark without timestamp")
    if abs(now - stamp) > window:
        raise DecryptError("watermark timestamp outside the accepted window (stale data)")


def encrypt_user_data(session_key_b64: str, doc: dict[str, Any], iv: bytes) -> str:
    """The inverse of `decrypt_user_data`; what WeChat does. Used by tests and the stand-in."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(json.dumps(doc).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(base64.b64decode(session_key_b64)), modes.CBC(iv)).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode("utf-8", "replace"))


def raw_data_signature_ok(raw_data: str, signature: str, session_key: str) -> bool:
    """wx.getUserInfo's `signature == sha1(rawData + session_key)`, session_key as base64 text."""
    expected = hashlib.sha1((raw_data + session_key).encode()).hexdigest()
    return _same(expected, signature)


def check_session_signature(session_key: str) -> str:
    """checksession's signature: HMAC-SHA256 keyed with the base64 TEXT, over nothing."""
    return hmac.new(session_key.encode(), b"", hashlib.sha256).hexdigest()


def push_signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def push_signature_ok(token: str, timestamp: str, nonce: str, signature: str) -> bool:
    """Message-push URL verification: sha1 over the sorted token/timestamp/nonce."""
    if not token:
        return False  # an unset push_token must never verify anything
    return _same(push_signature(token, timestamp, nonce), signature)


class SecretBox:
    """AES-256-GCM for secrets kept in the state backend (session_key at rest).

    Output is text ("g1:" + base64(nonce | ciphertext | tag)) so it sits in JSON values.
    `aad` binds a ciphertext to where it lives (the session id), so a value copied into
    another session's record does not decrypt.
    """

    __slots__ = ("_aead",)
    PREFIX = "g1:"

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("SecretBox needs a 32-byte key")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def encrypt(self, plain: bytes, aad: bytes = b"") -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain, aad or None)
        return self.PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, sealed: str, aad: bytes = b"") -> bytes:
        if not sealed.startswith(self.PREFIX):
            raise ValueError("not a SecretBox value")
        try:
            raw = base64.b64decode(sealed[len(self.PREFIX):], validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], aad or None)
        except (binascii.Error, ValueError, InvalidTag):
            raise ValueError("SecretBox value does not decrypt (wrong key?)") from None
