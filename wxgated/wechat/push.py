"""The `wechat: push` action: WeChat's message push, plain or safe mode (docs/CONFIG.md).

Plain mode (`push_token` only): `signature` = sha1(sorted token, timestamp, nonce);
signed POSTs go upstream as they came. Safe mode (`push_aes_key` set too): the body's
`Encrypt` is checked with `msg_signature` (which also covers Encrypt, so the body is
authenticated, unlike plain mode), decrypted, its appid checked, and the message goes
upstream as JSON. Both modes refuse stale timestamps and replayed nonces.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from wxgated.http.message import Body, HTTPError, Request, Response
from wxgated.wechat.crypto import push_signature_ok
from wxgated.wechat.push_body import PushBodyError, body_format, parse
from wxgated.wechat.push_crypto import PushCryptoError, decrypt_message, msg_signature_ok
from wxgated.wechat.replay import ReplayGuard

PUSH_LIMIT = 1024 * 1024
FORMAT_HEADER = b"x-wx-push-format"
MODE_HEADER = b"x-wx-push-mode"
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
Forward = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class PushKeys:
    token: str
    appid: str
    aes_key: bytes | None  # None = plain mode


def _decrypt(keys: PushKeys, q: dict[str, str], encrypt: Any) -> bytes:
    """The message inside `encrypt`, after msg_signature and the appid check (else 403)."""
    assert keys.aes_key is not None
    if not isinstance(encrypt, str) or not msg_signature_ok(
            keys.token, q.get("timestamp", ""), q.get("nonce", ""), encrypt,
            q.get("msg_signature", "")):
        raise HTTPError(403, "bad push msg_signature")
    try:
        return decrypt_message(keys.aes_key, encrypt, keys.appid)
    except PushCryptoError as exc:
        raise HTTPError(403, f"push does not decrypt: {exc.reason}") from None


def echo_answer(keys: PushKeys, q: dict[str, str]) -> bytes:
    """URL verification: the echostr to answer, once its signature checks out.

    In safe mode WeChat may send an encrypted echostr with a msg_signature over it; a
    verification with only the plain `signature` is accepted too (the echo reveals
    nothing, and WeChat's console sends that form while the mode is being switched).
    """
    if keys.aes_key is not None and "msg_signature" in q:
        return _decrypt(keys, q, q.get("echostr", ""))
    if not push_signature_ok(keys.token, q.get("timestamp", ""), q.get("nonce", ""),
                             q.get("signature", "")):
        raise HTTPError(403, "bad push signature")
    return q.get("echostr", "").encode()


def safe_message(keys: PushKeys, q: dict[str, str], raw: bytes) -> tuple[str, bytes]:
    """(format, upstream JSON body) for a safe- or compatible-mode POST.

    Plain fields beside Encrypt (compatible mode) are not covered by msg_signature, so
    only the decrypted message goes upstream. `_raw` keeps the message text exactly as
    WeChat encrypted it, for what flattening XML into JSON loses (attributes, order).
    """
    try:
        fmt = body_format(raw)
        envelope = parse(raw, fmt)
    except PushBodyError as exc:
        raise HTTPError(403, exc.reason) from None  # unauthenticated junk: no detail owed
    message = _decrypt(keys, q, envelope.get("Encrypt"))
    try:
        doc = parse(message, fmt)
    except PushBodyError as exc:
        raise HTTPError(400, f"decrypted {exc.reason}") from None
    doc["_raw"] = message.decode("utf-8", "replace")
    return fmt, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def as_json_request(req: Request, fmt: str, body: bytes) -> None:
    """Turn the request into the decrypted JSON push the upstream receives."""
    req.body = Body.of(body)
    for name in (b"content-length", b"transfer-encoding", b"content-encoding"):
        req.remove_header(name)
    req.set_header(b"content-type", b"application/json; charset=utf-8")
    req.set_header(FORMAT_HEADER, fmt.encode())
    req.set_header(MODE_HEADER, b"safe")


async def deliver(req: Request, forward: Forward | None, guard: ReplayGuard,
                  q: dict[str, str]) -> Response:
    """Claim the nonce, then forward (or answer "success"); a push the upstream did not
    take (5xx, or no answer) gives its nonce back so WeChat's retry can get through."""
    key = await guard.claim(q.get("timestamp", ""), q.get("nonce", ""))
    if forward is None:
        return Response(200, list(_TEXT), b"success")
    try:
        resp = await forward(req)
    except BaseException:
        await guard.release(key)
        raise
    if resp.status >= 500:
        await guard.release(key)
    return resp


def build_push_handler(keys: PushKeys, guard: ReplayGuard,
                       forward: Forward | None) -> Callable[[Request], Awaitable[Response]]:
    """The request handler for one `wechat: push` route."""

    async def push(req: Request) -> Response:
        q = dict(parse_qsl(req.query, keep_blank_values=True))
        if req.method in ("GET", "HEAD"):
            answer = echo_answer(keys, q)
            guard.check_age(q.get("timestamp", ""))
            await guard.claim(q.get("timestamp", ""), q.get("nonce", ""))
            return Response(200, list(_TEXT), answer)
        if keys.aes_key is None:
            if not push_signature_ok(keys.token, q.get("timestamp", ""), q.get("nonce", ""),
                                     q.get("signature", "")):
                raise HTTPError(403, "bad push signature")
            guard.check_age(q.get("timestamp", ""))
            await req.body.read(PUSH_LIMIT)  # buffered: forwarded as is, or dropped
            return await deliver(req, forward, guard, q)
        raw = await req.body.read(PUSH_LIMIT)
        fmt, body = safe_message(keys, q, raw)
        guard.check_age(q.get("timestamp", ""))
        as_json_request(req, fmt, body)
        return await deliver(req, forward, guard, q)

    return push
