"""The login hook: a user service vouches for the user before the gateway issues a token.

`wechat: {action: login, hook: {upstream, path, claims}}` POSTs
`{"openid", "unionid" (when WeChat gave one), "appid"}` to the upstream after
code2Session and before any session exists; selected fields of its JSON answer become
JWT claims (kept in the session too, so a refresh re-issues them). Anything short of a
usable answer ends the login with no session and no token: the client gets 503 when the
service could not be reached in time, 502 when it answered badly. The session_key is
never sent: the service learns who the user is, not how to read their data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.http.message import Request
from wxgated.wechat.backend_call import (
    DURATION,
    BackendCall,
    BadAnswer,
    compile_call,
    identity_headers,
    parse_json,
)

# Claims the gateway sets itself or that name the user: a hook must not override them
# (a `sub` from a user service would log the caller in as someone else).
RESERVED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "openid",
                      "unionid", "appid", "session_key", "phone", "kid", "typ"})
CLAIMS_LIMIT = 4096  # bytes of JSON: every request carries the token

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["upstream", "path", "claims"],
    "description": "login: ask a user service for claims before issuing the token",
    "properties": {
        "upstream": {"type": "string", "minLength": 1,
                     "description": "the user service (a name from upstreams:)"},
        "path": {"type": "string", "pattern": r"^/[^#\s]*$",
                 "description": "path the hook POSTs {openid, unionid, appid} to"},
        "claims": {
            "description": "answer fields that become JWT claims: claim → field (a dotted "
                           "path), or a list of field names kept under their own names",
            "oneOf": [
                {"type": "object", "additionalProperties": {"type": "string", "minLength": 1},
                 "propertyNames": {"minLength": 1}},
                {"type": "array", "items": {"type": "string", "minLength": 1},
                 "uniqueItems": True},
            ],
        },
        "timeout": {**DURATION, "description": "the whole hook call (default: the "
                                               "upstream's read timeout)"},
    },
}


@dataclass(frozen=True)
class LoginHook:
    call: BackendCall
    claims: tuple[tuple[str, tuple[str, ...]], ...]  # (claim, field path)
    appid: str

    async def claims_for(self, req: Request, openid: str, unionid: str | None) -> dict[str, Any]:
        """The claims the user service gives this user, or HTTPError 502/503."""
        doc: dict[str, Any] = {"openid": openid}
        if unionid:
            doc["unionid"] = unionid
        doc["appid"] = self.appid
        status, body = await self.call.post(req, doc,
                                            identity_headers(req, openid, unionid, None))
        if not 200 <= status < 300:
            raise self.call.bad(req.trace_id, f"HTTP {status}")
        try:
            return self._pick(parse_json(body))
        except BadAnswer as exc:
            raise self.call.bad(req.trace_id, str(exc)) from None

    def _pick(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise BadAnswer("not a JSON object")
        out: dict[str, Any] = {}
        for claim, path in self.claims:
            value = _lookup(answer, path)
            if value is None:
                continue  # a field the service leaves out is a claim the token lacks
            if not claim_value_ok(value):
                raise BadAnswer(f"{'.'.join(path)} is not a string, number, boolean or "
                                "list of strings")
            out[claim] = value
        if len(json.dumps(out, ensure_ascii=False)) > CLAIMS_LIMIT:
            raise BadAnswer(f"claims over {CLAIMS_LIMIT} bytes")
        return out


def _lookup(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def claim_value_ok(value: Any) -> bool:
    """A value a claim may hold and a claim header may carry: a string, a finite number,
    a boolean, or a list of strings; strings without control characters."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return isinstance(value, int) or math.isfinite(value)
    if isinstance(value, str):
        return _clean(value)
    return isinstance(value, list) and all(isinstance(v, str) and _clean(v) for v in value)


def _clean(text: str) -> bool:
    return not any(ord(c) < 0x20 and c != "\t" or c == "\x7f" for c in text)


def compile_hook(opts: dict[str, Any], ctx: Any, appid: str) -> LoginHook:
    """Errors point into `hook:` (a reserved claim name at its key)."""
    raw = opts["claims"]
    pairs = [(c, c) for c in raw] if isinstance(raw, list) else list(raw.items())
    claims = []
    for i, (claim, field) in enumerate(pairs):
        if claim in RESERVED:
            where = ("hook", "claims", i) if isinstance(raw, list) else ("hook", "claims", claim)
            raise SemanticError(f"claim {claim!r} is reserved (the gateway sets "
                                f"{', '.join(sorted(RESERVED))})", where)
        claims.append((claim, tuple(field.split("."))))
    call = compile_call(opts, ctx, "login hook", ("hook",))
    return LoginHook(call, tuple(claims), appid)


def reserved_claim_problems(hook: Any) -> list[tuple[tuple[Any, ...], str]]:
    """(path inside `hook:`, message) per reserved claim name, for `wxgated check`, which
    points at the key itself (compile_hook can only point at its value)."""
    if not isinstance(hook, dict):
        return []
    raw = hook.get("claims")
    names = list(enumerate(raw)) if isinstance(raw, list) else \
        [(k, k) for k in raw] if isinstance(raw, dict) else []
    return [(("claims", at), f"claim {name!r} is reserved: the gateway sets it itself")
            for at, name in names if isinstance(name, str) and name in RESERVED]
