"""The hostile parts of a JWT, checked by the gateway itself rather than left to pyjwt.

Until its signature is checked every byte of a token is the client's, and pyjwt's own
checks move between releases (a non-string `kid` or an unknown `crit` raised a bare
InvalidTokenError, a deeply nested header a RecursionError, `exp: "1"` was coerced):
anything but a TokenError here became a 500 with a traceback per request. So the
header is parsed and judged here, time claims must really be numbers, and every claim
that becomes a request header passes one function (`header_value`), because what it
lets through is what the upstream reads as the caller's identity.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

REASONS = ("missing", "malformed", "expired", "bad signature", "revoked", "invalid claims")
# the access log's reason for each (docs/OPERATIONS.md): by the detail where it says
# more than the phrase, since "invalid claims" and "bad signature" cover several causes
_LOG_REASON = {
    "missing": "token_missing",
    "malformed": "token_malformed",
    "expired": "token_expired",
    "bad signature": "bad_signature",
    "revoked": "session_revoked",
    "invalid claims": "bad_claim",
}
_LOG_DETAIL = {
    "unknown key id": "unknown_key",
    "algorithm not accepted": "bad_algorithm",
    "wrong issuer": "wrong_issuer",
    "wrong audience": "wrong_audience",
    "not valid yet": "not_yet_valid",
}
_PHRASE = {
    "missing": "missing token",
    "malformed": "malformed token",
    "expired": "token expired",
    "bad signature": "bad signature",
    "revoked": "token revoked",
    "invalid claims": "invalid claims",
}
# JWS compact serialization: three base64url segments (RFC 7515 §7.1)
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# bytes a field value may not hold (RFC 9110 §5.5 allows HTAB, SP, VCHAR, obs-text)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_EDGE_SPACE = (" ", "\t")
TIME_CLAIMS = ("exp", "iat", "nbf")


class TokenError(Exception):
    """Why a token was refused. `reason` is one of REASONS; `msg` is for the 401 body
    (details name the claim or check, never echo what the token said)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.msg = f"{_PHRASE[reason]}: {detail}" if detail else _PHRASE[reason]
        self.log_reason = _LOG_DETAIL.get(detail) or (
            "claim_missing" if detail.startswith("missing ") else _LOG_REASON[reason])
        super().__init__(self.msg)


def unverified_header(token: str) -> tuple[str | None, str]:
    """The (kid, alg) a token names, or TokenError.

    `crit` is refused outright: RFC 7515 §4.1.11 says a recipient must reject critical
    extensions it does not understand, and the gateway understands none (pyjwt would
    honour `b64`, so that is refused too: we never issue unencoded payloads).
    """
    if _SHAPE.fullmatch(token) is None:
        raise TokenError("malformed")
    head = token[:token.index(".")]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error, RecursionError):  # bad base64, bytes or JSON
        raise TokenError("malformed") from None
    if not isinstance(header, dict):
        raise TokenError("malformed", "header is not an object")
    if "crit" in header or "b64" in header:
        raise TokenError("malformed", "unsupported critical header")
    kid, alg = header.get("kid"), header.get("alg")
    if kid is not None and not isinstance(kid, str):
        raise TokenError("bad signature", "unknown key id")
    if not isinstance(alg, str):
        raise TokenError("bad signature", "algorithm not accepted")
    return kid, alg


def check_times(claims: dict[str, Any]) -> None:
    """exp/iat/nbf must be finite numbers: pyjwt only int()s them, which takes "123" and
    true, and (in older releases) raised TypeError on a list or OverflowError on 1e999."""
    for name in TIME_CLAIMS:
        v = claims.get(name)
        if v is None and name == "nbf":
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not _finite(v):
            raise TokenError("invalid claims", f"{name} is not a number")


def _finite(v: int | float) -> bool:
    """A time the ring can add leeway to (10**400 is a valid JSON int but no float)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def check_identity(claims: dict[str, Any]) -> None:
    """sub (the openid), sid and unionid must be clean strings: they become headers,
    session-store keys and rate-limit keys. Checked once per token (the ring caches)."""
    header_value(claims.get("sub"), "sub", identity=True)
    sid = claims.get("sid")
    if sid is not None and not isinstance(sid, str):
        raise TokenError("invalid claims", "sid is not a string")
    unionid = claims.get("unionid")
    if unionid is not None:
        header_value(unionid, "unionid", identity=True)


def header_value(value: Any, what: str, identity: bool = False) -> bytes:
    """`value` as a request header value, or TokenError ("invalid claims").

    The one gate between a claim and a header line: CR/LF would start a header of the
    client's choosing, NUL and other controls are cut or refused differently by each
    upstream parser, edge spaces are trimmed by them (so the upstream would read another
    value than the token holds). Identity values (`identity=True`) must be non-empty
    strings; mapped claims may also be numbers or booleans (written as in JSON).
    """
    if isinstance(value, str):
        text = value
    elif identity or not isinstance(value, int | float):
        raise TokenError("invalid claims", f"{what} is not a string")
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if identity and not text:
        raise TokenError("invalid claims", f"{what} is empty")
    try:
        raw = text.encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" is valid JSON)
        raise TokenError("invalid claims", f"{what} is not valid text") from None
    if _CONTROL.search(raw) is not None or text.startswith(_EDGE_SPACE) \
            or text.endswith(_EDGE_SPACE):
        raise TokenError("invalid claims", f"{what} has control characters or edge spaces")
    return raw
