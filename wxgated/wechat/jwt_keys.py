"""JWT keys: issue at login, verify per request, publish the public half (JWKS).

Verification pins the algorithm to the key, never to the token: the token's `kid` picks
the key and only that key's algorithm is allowed. That closes both classic holes, `alg:
none` and HS256 signed with an RSA public key (the "key confusion" attack), whatever the
token's header claims.

pyjwt's decode costs ≈100 µs (docs/PERFORMANCE.md), so verified tokens are cached in a
bounded LRU keyed by the exact token; a hit only re-checks `exp`. Revocation is not the
key ring's business: the jwt_auth filter asks the session store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from jwt.algorithms import get_default_algorithms

from wxgated.wechat.claims import (
    REASONS,
    TokenError,
    check_identity,
    check_times,
    unverified_header,
)
from wxgated.wechat.settings import SettingsError, seconds

HMAC_MIN = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 §3.2: key ≥ hash size
ASYMMETRIC = ("RS256", "ES256", "EdDSA")
ALGORITHMS = (*HMAC_MIN, *ASYMMETRIC)
__all__ = ["REASONS", "JWTKey", "KeyRing", "TokenError", "load_key"]


@dataclass(frozen=True)
class JWTKey:
    kid: str
    alg: str
    signing: Any = field(repr=False)  # secret bytes or private key; None = verify only
    verifying: Any = field(repr=False)  # secret bytes or public key


def _load_pem(alg: str, pem: bytes, path: list[str | int]) -> tuple[Any, Any]:
    try:
        private = load_pem_private_key(pem, password=None)
        public = private.public_key()
    except (ValueError, TypeError):
        private = None
        try:
            public = load_pem_public_key(pem)
        except (ValueError, TypeError):
            raise SettingsError("not a PEM private or public key (or it is encrypted)",
                                path) from None
    if alg == "RS256":
        if not isinstance(public, rsa.RSAPublicKey):
            raise SettingsError("RS256 needs an RSA key", path)
        if public.key_size < 2048:
            raise SettingsError("RSA keys must be at least 2048 bits", path)
    elif alg == "ES256":
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
            raise SettingsError("ES256 needs an EC P-256 key", path)
    elif not isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise SettingsError("EdDSA needs an Ed25519 or Ed448 key", path)
    return private, public


def load_key(cfg: dict[str, Any], index: int) -> JWTKey:
    path: list[str | int] = ["jwt", "keys", index]
    alg = cfg.get("alg", "HS256")
    kid = str(cfg.get("kid") or f"k{index + 1}")
    if alg not in ALGORITHMS:
        raise SettingsError(f"unsupported alg {alg!r} (one of {', '.join(ALGORITHMS)})",
                            [*path, "alg"])
    if alg in HMAC_MIN:
        secret = cfg.get("secret")
        if not secret:
            raise SettingsError(f"{alg} needs a secret", path)
        raw = str(secret).encode()
        if len(raw) < HMAC_MIN[alg]:
            raise SettingsError(f"{alg} secret must be at least {HMAC_MIN[alg]} bytes",
                                [*path, "secret"])
        return JWTKey(kid, alg, raw, raw)
    if cfg.get("pem"):
        pem, where = str(cfg["pem"]).encode(), [*path, "pem"]
    elif cfg.get("pem_file"):
        where = [*path, "pem_file"]
        try:
            pem = Path(cfg["pem_file"]).read_bytes()
        except OSError as exc:
            raise SettingsError(f"cannot read pem_file: {exc.strerror}", where) from None
    else:
        raise SettingsError(f"{alg} needs pem or pem_file", path)
    private, public = _load_pem(alg, pem, where)
    return JWTKey(kid, alg, private, public)


class KeyRing:
    """The first key signs; every key verifies (rotation: add the new key first, keep the
    old one until the tokens it signed have expired)."""

    def __init__(self, keys: list[JWTKey], issuer: str = "wxgated", ttl: float = 7200.0,
                 audience: str | None = None, leeway: float = 30.0,
                 cache_size: int = 10_000) -> None:
        if not keys:
            raise SettingsError("jwt.keys needs at least one key", ["jwt", "keys"])
        if keys[0].signing is None:
            raise SettingsError("the first key signs: it needs a private key or a secret",
                                ["jwt", "keys", 0])
        self.keys = keys
        self._by_kid = {k.kid: k for k in keys}
        if len(self._by_kid) != len(keys):
            raise SettingsError("two keys share a kid", ["jwt", "keys"])
        self.issuer = issuer
        self.ttl = int(ttl)
        self.audience = audience
        self.leeway = leeway
        self._cache: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._cache_size = cache_size
        self._jwks = {"keys": [self._jwk(k) for k in keys if k.alg in ASYMMETRIC]}

    @classmethod
    def from_config(cls, jwt_cfg: dict[str, Any]) -> KeyRing:
        keys = [load_key(k, i) for i, k in enumerate(jwt_cfg.get("keys") or [])]
        return cls(
            keys,
            issuer=str(jwt_cfg.get("issuer", "wxgated")),
            ttl=seconds(jwt_cfg.get("ttl", "2h"), ["jwt", "ttl"]),
            audience=jwt_cfg.get("audience"),
            leeway=seconds(jwt_cfg.get("leeway", "30s"), ["jwt", "leeway"]),
            cache_size=int(jwt_cfg.get("cache_size", 10_000)),
        )

    def __repr__(self) -> str:
        return f"KeyRing(kids={[k.kid for k in self.keys]}, issuer={self.issuer!r})"

    @staticmethod
    def _jwk(key: JWTKey) -> dict[str, Any]:
        doc = dict(get_default_algorithms()[key.alg].to_jwk(key.verifying, as_dict=True))
        doc.update(kid=key.kid, alg=key.alg, use="sig")
        return doc

    def jwks(self) -> dict[str, Any]:
        """RFC 7517 key set of the asymmetric keys (HMAC secrets are never published)."""
        return self._jwks

    def issue(self, claims: dict[str, Any], ttl: float | None = None) -> tuple[str, int]:
        """A signed token for `claims` (sub=openid, sid, ...) plus iss/iat/exp(/aud)."""
        key = self.keys[0]
        life = self.ttl if ttl is None else max(1, int(ttl))
        now = int(time.time())
        payload = {**claims, "iss": self.issuer, "iat": now, "exp": now + life}
        if self.audience:
            payload["aud"] = self.audience
        token = jwt.encode(payload, key.signing, algorithm=key.alg, headers={"kid": key.kid})
        return token, life

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims (shared: treat as read-only), or TokenError."""
        hit = self._cache.get(token)
        if hit is not None:
            if hit[1] <= time.time():
                del self._cache[token]
                raise TokenError("expired")
            self._cache.move_to_end(token)
            return hit[0]
        if not token:
            raise TokenError("missing")
        claims = self._decode(token)
        check_identity(claims)
        # `claim.openid` (rate-limit and cache keys, templates) reads naturally; the token
        # says `sub`, and only `sub`: a token's own `openid` claim could name another user
        claims["openid"] = claims["sub"]
        self._cache[token] = (claims, claims["exp"] + self.leeway)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        """Verified claims; the key comes from our ring by `kid`, the algorithm from the key."""
        kid, alg = unverified_header(token)
        if kid is not None:
            key = self._by_kid.get(kid)
            if key is None:
                raise TokenError("bad signature", "unknown key id")
            candidates = [key]
        else:
            candidates = self.keys
        failure = TokenError("bad signature", "algorithm not accepted")
        for key in candidates:
            if alg != key.alg:
                continue
            try:
                return self._decode_with(token, key)
            except jwt.InvalidSignatureError:
                failure = TokenError("bad signature")
        raise failure

    def _decode_with(self, token: str, key: JWTKey) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.verifying, algorithms=[key.alg], issuer=self.issuer or None,
                audience=self.audience, leeway=self.leeway,
                options={"require": ["exp", "iat", "sub"], "verify_aud": bool(self.audience)},
            )
        except jwt.InvalidSignatureError:
            raise
        except jwt.PyJWTError as exc:
            raise _token_error(exc) from None
        except (ValueError, TypeError, OverflowError, RecursionError):
            # what older pyjwt let escape from hostile JSON: still the client's fault
            raise TokenError("malformed") from None
        if not isinstance(claims, dict):
            raise TokenError("malformed", "payload is not an object")
        check_times(claims)
        return claims


def _token_error(exc: jwt.PyJWTError) -> TokenError:
    """The 401 reason for a pyjwt refusal (only the class is read: its text may quote
    the token)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return TokenError("expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return TokenError("invalid claims", "not valid yet")
    if isinstance(exc, jwt.InvalidIssuerError):
        return TokenError("invalid claims", "wrong issuer")
    if isinstance(exc, jwt.InvalidAudienceError):
        return TokenError("invalid claims", "wrong audience")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return TokenError("invalid claims", f"missing {exc.claim}")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return TokenError("bad signature", "algorithm not accepted")
    if isinstance(exc, jwt.DecodeError):
        return TokenError("malformed")
    return TokenError("invalid claims", type(exc).__name__)
