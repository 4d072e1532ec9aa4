"""Safe-mode ("安全模式") message-push crypto: msg_signature and the AES-256-CBC envelope.

WeChat's message encryption scheme (the WXBizMsgCrypt samples): the 43-character
EncodingAESKey is base64 of a 32-byte AES key (without the trailing "="); the IV is
the key's first 16 bytes; padding is PKCS#7 to 32-byte blocks (pad value 1..32, not the
16-byte blocks `cryptography`'s PKCS7(128) expects); the plaintext is 16 random bytes,
a 4-byte big-endian message length, the message, then the appid it was meant for.

The appid check matters: it is what stops a push encrypted for another mini program
that shares our key material (a copied EncodingAESKey) from being taken as ours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeChat's PKCS#7 block size, in bytes
KEY_CHARS = 43


class PushCryptoError(ValueError):
    """A safe-mode push that cannot be trusted; `reason` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key behind an EncodingAESKey; ValueError when it is not one.

    Checked at config load, so a mistyped key fails the start-up, not every push.
    """
    if len(encoding_aes_key) != KEY_CHARS:
        raise ValueError(f"EncodingAESKey must be {KEY_CHARS} characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("EncodingAESKey is not base64 text") from None
    if len(key) != 32:
        raise ValueError("EncodingAESKey does not decode to 32 bytes")
    return key


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """sha1 over the sorted concatenation of token, timestamp, nonce and Encrypt."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


def msg_signature_ok(token: str, timestamp: str, nonce: str, encrypt: str,
                     signature: str) -> bool:
    """Constant-time check, so timing says nothing about how much of a forgery was right."""
    if not token or not encrypt:
        return False
    expected = msg_signature(token, timestamp, nonce, encrypt).encode()
    return hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace"))


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def _unpad(padded: bytes) -> bytes:
    pad = padded[-1] if padded else 0
    if not 1 <= pad <= BLOCK or padded[-pad:] != bytes([pad]) * pad:
        raise PushCryptoError("bad padding (wrong EncodingAESKey?)")
    return padded[:-pad]


def decrypt_message(key: bytes, encrypt_b64: str, appid: str) -> bytes:
    """The message inside a safe-mode `Encrypt` value, after the appid check.

    Every failure is one PushCryptoError: the caller answers 403 either way, and a
    uniform answer gives a padding-oracle attacker nothing (the signature is checked
    before this anyway).
    """
    try:
        data = base64.b64decode(encrypt_b64, validate=True)
    except (binascii.Error, ValueError):
        raise PushCryptoError("Encrypt is not base64") from None
    if not data or len(data) % 16:
        raise PushCryptoError("Encrypt length is not a multiple of 16 bytes")
    decryptor = _cipher(key).decryptor()
    plain = _unpad(decryptor.update(data) + decryptor.finalize())
    if len(plain) < 20:
        raise PushCryptoError("decrypted message too short")
    (size,) = struct.unpack(">I", plain[16:20])
    if 20 + size > len(plain):
        raise PushCryptoError("decrypted message length out of range")
    message, tail = plain[20:20 + size], plain[20 + size:]
    if not hmac.compare_digest(tail, appid.encode()):
        raise PushCryptoError("appid mismatch")
    return message


def encrypt_message(key: bytes, message: bytes, appid: str, random16: bytes | None = None) -> str:
    """The inverse of `decrypt_message`; what WeChat does. Used by tests and stand-ins."""
    prefix = os.urandom(16) if random16 is None else random16
    plain = prefix + struct.pack(">I", len(message)) + message + appid.encode()
    pad = BLOCK - len(plain) % BLOCK
    encryptor = _cipher(key).encryptor()
    sealed = encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()
    return base64.b64encode(sealed).decode()
