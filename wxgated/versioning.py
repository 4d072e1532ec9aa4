"""API versions: which version a request asks for (docs/CONFIG.md `match.version`).

Three places a client can name a version, tried in the configured order:
- `path`:   `/v2/users` (or `<path_prefix>/v2/...`, e.g. `/api/v2/users`); the version
            segment is removed from `req.path` so routes are written once, without it;
- `header`: `X-API-Version: 2` (or `v2`);
- `accept`: `Accept: application/vnd.<vendor>.v2+json`.

Versions are normalised to digits and dots without the `v` ("v2" → "2", "V1.1" →
"1.1") so `match.version: v2`, `2` and `"2"` all mean the same thing: routers should
pass their configured values through `normalize()` at compile time.

How the server plugs it in: compile `sources = VersionSources.parse(cfg)` once per
Snapshot; per request, before `router.match`, call `extract_version(req, sources)`,
store the result (or the route family's default) in `req.ctx["version"]`, and match on
`req.path` (already stripped). Requests that name no version get the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wxgated.http.message import Request

SOURCES = ("path", "header", "accept")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sources": {"type": "array", "items": {"enum": list(SOURCES)}, "minItems": 1,
                    "uniqueItems": True, "default": list(SOURCES)},
        "path_prefix": {"type": "string", "pattern": "^(/[^/]+)*$", "default": "",
                        "description": "the version segment follows this prefix"},
        "strip": {"type": "boolean", "default": True,
                  "description": "remove the version segment from the path before routing"},
        "header": {"type": "string", "default": "X-API-Version"},
        "vendor": {"type": "string", "description": "only application/vnd.<vendor>.vN+json "
                   "counts; any vendor when absent"},
        "default": {"type": ["string", "integer"]},
    },
}

_VERSION = re.compile(r"^[vV]?(\d+(?:\.\d+)*)$")
_ACCEPT = re.compile(rb"application/vnd\.([a-z0-9][a-z0-9._-]*?)\.v(\d+(?:\.\d+)*)\+json")


def normalize(value: str | int) -> str | None:
    """"v2", "V2", "2" → "2"; None for anything that is not a version."""
    m = _VERSION.match(str(value).strip())
    return m.group(1) if m else None


@dataclass(frozen=True)
class VersionSources:
    order: tuple[str, ...] = SOURCES
    path_prefix: str = ""  # "" or "/api": the version is the segment after it
    strip: bool = True
    header: bytes = b"x-api-version"
    vendor: bytes | None = None
    default: str | None = None

    @classmethod
    def parse(cls, cfg: dict[str, Any] | None) -> VersionSources:
        cfg = cfg or {}
        order = tuple(cfg.get("sources", SOURCES))
        for s in order:
            if s not in SOURCES:
                raise ValueError(f"unknown version source {s!r}; use {', '.join(SOURCES)}")
        default = cfg.get("default")
        norm_default = None if default is None else normalize(default)
        if default is not None and norm_default is None:
            raise ValueError(f"default version {default!r} is not a version (e.g. v1, 2)")
        vendor = cfg.get("vendor")
        return cls(
            order=order,
            path_prefix=str(cfg.get("path_prefix", "")).rstrip("/"),
            strip=bool(cfg.get("strip", True)),
            header=str(cfg.get("header", "X-API-Version")).lower().encode("latin-1"),
            vendor=None if vendor is None else str(vendor).lower().encode("latin-1"),
            default=norm_default,
        )


def _from_path(req: Request, src: VersionSources) -> str | None:
    path = req.path
    prefix = src.path_prefix
    if prefix and not (path.startswith(prefix) and path[len(prefix):len(prefix) + 1] == "/"):
        return None
    start = len(prefix) + 1
    if path[start:start + 1] not in ("v", "V"):
        return None
    end = path.find("/", start)
    segment = path[start:] if end < 0 else path[start:end]
    version = normalize(segment)
    if version is not None and src.strip:
        rest = "" if end < 0 else path[end:]
        req.path = (prefix + rest) or "/"
    return version


def _from_accept(req: Request, vendor: bytes | None) -> str | None:
    accept = req.header(b"accept")
    if accept is None or b"vnd." not in accept:
        return None
    for m in _ACCEPT.finditer(accept.lower()):
        if vendor is None or m.group(1) == vendor:
            return m.group(2).decode()
    return None


def extract_version(req: Request, sources: VersionSources) -> str | None:
    """The version the request names, first source in `sources.order` wins; None when
    it names none. A path version segment is stripped from `req.path` (when
    `sources.strip`) even if an earlier source already decided the version, so routes
    never see it."""
    found: str | None = None
    for source in sources.order:
        if source == "path":
            v = _from_path(req, sources)
        elif found is not None:
            continue
        elif source == "header":
            raw = req.header(sources.header)
            v = None if raw is None else normalize(raw.decode("latin-1"))
        else:
            v = _from_accept(req, sources.vendor)
        if found is None:
            found = v
    return found


def request_version(req: Request, sources: VersionSources) -> str | None:
    """`extract_version` or the default, also kept in `req.ctx["version"]` (access
    log, filters)."""
    version = extract_version(req, sources) or sources.default
    req.ctx["version"] = version
    return version
