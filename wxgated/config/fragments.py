"""Building blocks of the JSON Schema: shared patterns, `$defs` and small helpers.

Here, apart from the assembly (wxgated.compiler.schema), so any feature can describe
its options with them without importing the compiler that imports every feature.
"""

from __future__ import annotations

from typing import Any

from wxgated.config import units

# Patterns shared with validate.py (which turns a mismatch into a readable hint).
NAME = r"^[A-Za-z0-9_.-]+$"
LISTEN = r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):[0-9]{1,5}$"
WORKERS = r"^(?:auto|[1-9][0-9]*)$"
TARGET_URL = r"^https?://[^\s/?#@]+/?$"
REDIS_URL = r"^(?:redis|rediss|unix)://"
RESOLVER = r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
_KEY_PART = r"(?:ip|route|(?:header|claim|cookie)[.:][^+\s]+)"
HASH_KEY = rf"^{_KEY_PART}(?:\+{_KEY_PART})*$"
STATUS_SPEC = r"^(?:[1-5]xx|[1-5][0-9]{2}(?:-[1-5][0-9]{2})?)$"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
HOST = rf"^(?:(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\])$"
VERSION = r"^[vV]?[0-9]+(?:\.[0-9]+)*$"
RETRY_ON = r"^(?:connect_error|timeout)$"
OTLP_URL = r"^https?://[^\s/?#]+(?:/[^\s?#]*)?$"
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]
IDEMPOTENT_METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]

PATTERN_HINTS: dict[str, str] = {
    NAME: 'use letters, digits, "_", "." and "-"',
    LISTEN: 'expected "host:port", e.g. "0.0.0.0:8080" or "[::]:8080"',
    WORKERS: 'expected a number ≥ 1 or "auto"',
    TARGET_URL: 'expected "http://host:port" or "https://host:port" (no path)',
    REDIS_URL: 'expected a redis://, rediss:// or unix:// URL',
    RESOLVER: 'expected an IP address with an optional port: "10.0.0.2", "10.0.0.2:5353" '
              'or "[fd00::53]:53"',
    HASH_KEY: "expected ip, route, header.NAME, cookie.NAME, claim.NAME, or several "
              'joined with "+" (e.g. "claim.openid+ip")',
    STATUS_SPEC: 'expected a status (200), a class ("5xx") or a range ("200-399")',
    HOST: 'expected a host name ("api.example.com") or a wildcard ("*.example.com")',
    VERSION: 'expected a version such as "v1", "2" or "v2.1"',
    RETRY_ON: "expected connect_error, timeout or an HTTP status",
    OTLP_URL: 'expected an http(s) URL of an OTLP/HTTP traces endpoint, e.g. '
              '"http://127.0.0.1:4318/v1/traces"',
    r"^/": 'must start with "/"',
    r"^https?://": "expected an http:// or https:// URL",
    r"^[^{}]*$": 'must not contain "{" or "}"',
}

SCHEMA_ID = "https://wxgated.dev/schema/v1/wxgated.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]


def with_meta(schema: Schema, default: Any = None, desc: str | None = None) -> Schema:
    if default is not None:
        schema["default"] = default
    if desc:
        schema["description"] = desc
    return schema


def obj(props: dict[str, Schema], required: tuple[str, ...] = (), default: Any = None,
        desc: str | None = None) -> Schema:
    """An object with exactly these keys."""
    s: Schema = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        s["required"] = list(required)
    return with_meta(s, default, desc)


def duration(default: Any = None, desc: str | None = None, positive: bool = True) -> Schema:
    ref = "#/$defs/positive_duration" if positive else "#/$defs/duration"
    return with_meta({"$ref": ref}, default, desc)


def size(default: Any = None, desc: str | None = None) -> Schema:
    return with_meta({"$ref": "#/$defs/size"}, default, desc)


def string(default: Any = None, desc: str | None = None, **kw: Any) -> Schema:
    return with_meta({"type": "string", **kw}, default, desc)


def integer(default: Any = None, desc: str | None = None, minimum: int | None = None,
            maximum: int | None = None) -> Schema:
    s: Schema = {"type": "integer"}
    if minimum is not None:
        s["minimum"] = minimum
    if maximum is not None:
        s["maximum"] = maximum
    return with_meta(s, default, desc)


def boolean(default: bool | None = None, desc: str | None = None) -> Schema:
    s = with_meta({"type": "boolean"}, None, desc)
    if default is not None:
        s["default"] = default
    return s


def enum(values: list[Any], default: Any = None, desc: str | None = None) -> Schema:
    return with_meta({"enum": list(values)}, default, desc)


def methods(default: list[str] | None = None, desc: str | None = None) -> Schema:
    return with_meta({"type": "array", "uniqueItems": True, "minItems": 1,
                      "items": {"enum": HTTP_METHODS}}, default, desc)


def statuses(default: list[Any], desc: str) -> Schema:
    item = {"type": ["integer", "string"], "minimum": 100, "maximum": 599,
            "pattern": STATUS_SPEC}
    return with_meta({"type": "array", "minItems": 1, "items": item}, default, desc)


DEFS: Schema = {
    "duration": {"type": ["string", "number"], "minimum": 0,
                 "pattern": units.DURATION_PATTERN,
                 "description": "a duration: 250ms, 10s, 1m30s, 2h, 1d, or a number of seconds"},
    "positive_duration": {"type": ["string", "number"], "exclusiveMinimum": 0,
                          "pattern": units.POSITIVE_DURATION_PATTERN,
                          "description": "a duration greater than zero: 250ms, 10s, 2h"},
    "size": {"type": ["string", "integer"], "minimum": 0, "pattern": units.SIZE_PATTERN,
             "description": "a size: 512, 10KB (×1000), 64KiB, 1MiB, 1GiB (×1024)"},
    "name": {"type": "string", "pattern": NAME,
             "description": "letters, digits, '_', '.' and '-'"},
}


