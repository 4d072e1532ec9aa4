"""SessionStore on the real memory backend and on a real redis-server."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid

import pytest
from redis.asyncio import Redis

from wxgated.config.units import parse_encryption_key
from wxgated.state import StateBackend, StateError, open_backend
from wxgated.wechat.crypto import SecretBox
from wxgated.wechat.sessions import SessionStore

KEY = os.urandom(32)


def session_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def redis_cfg(url: str, prefix: str) -> dict:
    return {"backend": "redis", "redis": {"url": url, "timeout": "500ms", "prefix": prefix}}


async def test_create_get_lookup_revoke(state_backend: StateBackend) -> None:
    store = SessionStore(state_backend, ttl=60, box=SecretBox(KEY))
    key = session_key()
    sess = await store.create("o-1", "u-1", key)
    assert len(sess.sid) >= 32 and sess.openid == "o-1" and sess.unionid == "u-1"
    rec = await store.get(sess.sid)
    assert rec is not None and rec.session_key == key and rec.created == sess.created
    assert key not in repr(rec)
    looked = await store.lookup(sess.sid)
    assert looked is not None and looked.openid == "o-1" and not hasattr(looked, "session_key")
    other = await store.create("o-2", None, session_key())
    assert other.sid != sess.sid and (await store.lookup(other.sid)).unionid is None
    assert await store.revoke(sess.sid) is True
    assert await store.get(sess.sid) is None and await store.lookup(sess.sid) is None
    assert await store.lookup(other.sid) is not None
    assert await store.get("") is None and await store.get("no-such-sid") is None


async def test_sessions_expire_after_ttl_and_touch_extends(state_backend: StateBackend) -> None:
    store = SessionStore(state_backend, ttl=1.0)
    a = await store.create("o-a", None, session_key())
    b = await store.create("o-b", None, session_key())
    await asyncio.sleep(0.6)
    assert await store.touch(b.sid) is True
    await asyncio.sleep(0.6)
    assert await store.get(a.sid) is None
    assert (await store.get(b.sid)) is not None
    assert await store.touch(a.sid) is False


async def test_redis_sessions_survive_a_restart(redis_url: str) -> None:
    """A new backend connection and a new SessionStore (a restarted gateway) see the session."""
    prefix = f"t{uuid.uuid4().hex}:"
    key = session_key()
    first = open_backend(redis_cfg(redis_url, prefix))
    sess = await SessionStore(first, 60, SecretBox(KEY)).create("o-r", "u-r", key)
    await first.close()
    second = open_backend(redis_cfg(redis_url, prefix))
    try:
        rec = await SessionStore(second, 60, SecretBox(KEY)).get(sess.sid)
        assert rec is not None and (rec.openid, rec.unionid, rec.session_key) == ("o-r", "u-r", key)
        # With the wrong encryption key the secret is unreadable, and says so.
        with pytest.raises(StateError, match="does not decrypt"):
            await SessionStore(second, 60, SecretBox(os.urandom(32))).get(sess.sid)
        with pytest.raises(StateError, match="no state.encryption_key"):
            await SessionStore(second, 60, None).get(sess.sid)
    finally:
        await second.close()


async def test_session_key_is_encrypted_at_rest_in_redis(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex}:"
    state = open_backend(redis_cfg(redis_url, prefix))
    key = session_key()
    raw_key = base64.b64decode(key)
    sess = await SessionStore(state, 60, SecretBox(KEY)).create("o-enc", None, key)
    await state.close()
    direct = Redis.from_url(redis_url)
    try:
        names = [n async for n in direct.scan_iter(match=f"{prefix}*")]
        assert len(names) == 1 and sess.sid.encode() in names[0]
        stored = await direct.get(names[0])
    finally:
        await direct.aclose()
    assert b"o-enc" in stored  # the record is there...
    assert key.encode() not in stored and raw_key not in stored  # ...but not the secret
    assert base64.b64encode(raw_key).decode().rstrip("=").encode() not in stored


async def test_a_sealed_key_moved_to_another_session_does_not_decrypt() -> None:
    state = open_backend({"backend": "memory"})
    store = SessionStore(state, 60, SecretBox(KEY))
    a = await store.create("o-a", None, session_key())
    b = await store.create("o-b", None, session_key())
    await state.set("wx:sess:" + b.sid, await state.get("wx:sess:" + a.sid), 60)
    with pytest.raises(StateError):
        await store.get(b.sid)


def test_encryption_key_accepts_hex_and_base64_of_32_bytes() -> None:
    raw = os.urandom(32)
    assert parse_encryption_key(raw.hex()) == raw
    assert parse_encryption_key(base64.b64encode(raw).decode()) == raw
    assert parse_encryption_key(base64.urlsafe_b64encode(raw).decode()) == raw
    assert parse_encryption_key(base64.b64encode(raw).decode().rstrip("=")) == raw
    for bad in ("", "short", raw[:16].hex(), base64.b64encode(os.urandom(24)).decode()):
        with pytest.raises(ValueError, match="32 bytes"):
            parse_encryption_key(bad)


async def test_hook_claims_and_a_stored_phone_live_in_the_session(state_backend: StateBackend) -> None:
    store = SessionStore(state_backend, ttl=60, box=SecretBox(KEY))
    claims = {"user_id": 42, "roles": ["member"]}
    sess = await store.create("o-c", "u-c", session_key(), claims)
    assert sess.claims == claims and sess.phone is None
    await asyncio.sleep(1.1)  # a TTL that set_phone reset to the full 60 s would show
    assert await store.set_phone(sess.sid, "+8613800138000") is True
    left = await state_backend.ttl("wx:sess:" + sess.sid)
    assert left is not None and left < 59.5
    looked = await store.lookup(sess.sid)
    assert looked is not None and (looked.claims, looked.phone) == (claims, "+8613800138000")
    renewed = await store.renew(sess.sid)
    assert renewed is not None and renewed.claims == claims
    assert renewed.phone == "+8613800138000"
    raw = await state_backend.get("wx:sess:" + sess.sid)
    assert raw is not None and b"13800138000" not in raw  # encrypted at rest, like the key
    await store.revoke(sess.sid)
    assert await store.set_phone(sess.sid, "+8613800138000") is False
    assert await store.renew(sess.sid) is None


async def test_a_sealed_phone_moved_to_another_session_does_not_decrypt() -> None:
    state = open_backend({"backend": "memory"})
    store = SessionStore(state, 60, SecretBox(KEY))
    a = await store.create("o-a", None, session_key())
    b = await store.create("o-a", None, session_key())
    await store.set_phone(a.sid, "+8613800138000")
    await state.set("wx:sess:" + b.sid, await state.get("wx:sess:" + a.sid), 60)
    with pytest.raises(StateError, match="phone does not decrypt"):
        await store.lookup(b.sid)
