"""Server-side WeChat sessions: sid → {openid, unionid, session_key, created, claims, phone}.

The session_key is what lets the gateway decrypt a user's data and answer checksession;
it never leaves the gateway. With a `SecretBox` it is stored AES-256-GCM encrypted, bound
to its sid, so a Redis dump or a copied record reveals nothing usable.

`claims` are what a login hook added to the token: kept here so a refresh re-issues them
from the gateway's record rather than from whatever token the client presents. `phone`
is a number `wechat: phone` verified with `store_phone: true`; it is personal data, so
with a `SecretBox` it is encrypted like the session_key.

Only the StateBackend interface is used, so memory and Redis (Cluster) behave the same.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from wxgated.state.base import Ready, StateBackend, StateError
from wxgated.wechat.crypto import SecretBox

PREFIX = "wx:sess:"


@dataclass(frozen=True)
class Session:
    sid: str
    openid: str
    unionid: str | None
    created: float
    claims: dict[str, Any] = field(default_factory=dict)  # from the login hook; read-only
    phone: str | None = None  # E.164, when `wechat: phone` stored one


@dataclass(frozen=True)
class SessionRecord(Session):
    """A session with its secret: only for code inside the gateway (decrypt, checksession)."""

    session_key: str = field(default="", repr=False)


class SessionStore:
    def __init__(self, state: StateBackend, ttl: float, box: SecretBox | None = None,
                 appid: str = "") -> None:
        self.state = state
        # keyed by appid: a sid of one mini program is no session of another
        self.prefix = f"{PREFIX}{appid}:" if appid else PREFIX
        self.ttl = ttl
        self._box = box
        # sid -> (stored bytes, Session): the per-request revocation check still reads the
        # state backend every time, but skips decoding when the stored value is unchanged
        self._parsed: dict[str, tuple[bytes, Session]] = {}

    def __repr__(self) -> str:
        return f"SessionStore(state={self.state.name!r}, ttl={self.ttl}, encrypted={self._box is not None})"

    async def create(self, openid: str, unionid: str | None, session_key: str,
                     claims: dict[str, Any] | None = None) -> Session:
        sid = secrets.token_urlsafe(24)
        created = time.time()
        doc: dict[str, object] = {"openid": openid, "unionid": unionid, "created": created}
        if claims:
            doc["claims"] = claims
        if self._box is not None:
            doc["session_key_enc"] = self._box.encrypt(session_key.encode(), sid.encode())
        else:
            doc["session_key"] = session_key
        await self.state.set(self.prefix + sid, json.dumps(doc).encode(), self.ttl)
        return Session(sid, openid, unionid, created, dict(claims or {}))

    async def set_phone(self, sid: str, phone: str) -> bool:
        """Keep a verified phone number in the session (its TTL unchanged). False when
        the session is gone. Like `touch`, a read then a write: a logout landing between
        the two (one state round trip) would be undone, as it would by a refresh."""
        raw = await self.state.get(self.prefix + sid) if sid else None
        doc = None if raw is None else _decode(sid, raw)
        left = await self.state.ttl(self.prefix + sid) if doc is not None else None
        if doc is None or left is None or left <= 0:
            return False
        doc.pop("phone", None)
        doc.pop("phone_enc", None)
        if self._box is not None:
            doc["phone_enc"] = self._box.encrypt(phone.encode(), _phone_aad(sid))
        else:
            doc["phone"] = phone
        return await self.state.set(self.prefix + sid, json.dumps(doc).encode(), left)

    async def _load(self, sid: str) -> dict[str, object] | None:
        if not sid:
            return None
        raw = await self.state.get(self.prefix + sid)
        return None if raw is None else _decode(sid, raw)

    def lookup(self, sid: str) -> Awaitable[Session | None]:
        """The session without its secret: what a per-request revocation check needs;
        `Ready` when the state answered at once (memory)."""
        if not sid:
            return Ready(None)
        raw = self.state.get(self.prefix + sid)
        if isinstance(raw, Ready):
            return Ready(self._session(sid, raw.value))
        return self._lookup(sid, raw)

    async def _lookup(self, sid: str, raw: Awaitable[bytes | None]) -> Session | None:
        return self._session(sid, await raw)

    def _session(self, sid: str, raw: bytes | None) -> Session | None:
        if raw is None:
            self._parsed.pop(sid, None)
            return None
        hit = self._parsed.get(sid)
        if hit is not None and hit[0] == raw:
            return hit[1]
        doc = _decode(sid, raw)
        if doc is None:
            return None
        session = Session(sid, str(doc["openid"]), _opt(doc.get("unionid")),
                          float(doc["created"]), _claims(doc), self._phone(sid, doc))  # type: ignore[arg-type]
        if len(self._parsed) >= _PARSED_MAX:
            self._parsed.clear()
        self._parsed[sid] = (raw, session)
        return session

    async def get(self, sid: str) -> SessionRecord | None:
        doc = await self._load(sid)
        if doc is None:
            return None
        if "session_key_enc" in doc:
            if self._box is None:
                raise StateError("session_key is encrypted but no state.encryption_key is set")
            try:
                key = self._box.decrypt(str(doc["session_key_enc"]), sid.encode()).decode()
            except ValueError:
                raise StateError("session_key does not decrypt (encryption_key changed?)") from None
        else:
            key = str(doc.get("session_key", ""))
        return SessionRecord(sid, str(doc["openid"]), _opt(doc.get("unionid")),
                             float(doc["created"]), _claims(doc), self._phone(sid, doc),  # type: ignore[arg-type]
                             session_key=key)

    def _phone(self, sid: str, doc: dict[str, object]) -> str | None:
        sealed = doc.get("phone_enc")
        if sealed is None:
            return _opt(doc.get("phone"))
        if self._box is None:
            raise StateError("phone is encrypted but no state.encryption_key is set")
        try:
            return self._box.decrypt(str(sealed), _phone_aad(sid)).decode()
        except ValueError:
            raise StateError("phone does not decrypt (encryption_key changed?)") from None

    async def touch(self, sid: str) -> bool:
        """Give a live session a fresh TTL. False when it is gone."""
        return await self.renew(sid) is not None

    async def renew(self, sid: str) -> Session | None:
        """`touch` that also answers the session (token refresh re-issues its claims)."""
        raw = await self.state.get(self.prefix + sid) if sid else None
        if raw is None:
            return None
        session = self._session(sid, raw)
        if session is None or not await self.state.set(self.prefix + sid, raw, self.ttl):
            return None
        return session

    async def revoke(self, sid: str) -> bool:
        self._parsed.pop(sid, None)
        return await self.state.delete(self.prefix + sid) if sid else False


def _opt(value: object) -> str | None:
    return str(value) if value else None


def _claims(doc: dict[str, object]) -> dict[str, Any]:
    claims = doc.get("claims")
    return claims if isinstance(claims, dict) else {}


def _phone_aad(sid: str) -> bytes:
    return (sid + "/phone").encode()


_PARSED_MAX = 10_000


def _decode(sid: str, raw: bytes) -> dict[str, object] | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise StateError(f"session {sid[:6]}… is not JSON") from None
    return doc if isinstance(doc, dict) else None
