"""The JSON Schema (draft 2020-12) of routes.yaml, assembled from core + plug-ins.

The core sections are written here. Each filter's options come from its class's
`schema` (wxgated.filters.FILTERS) and each terminal's from its registration
(wxgated.terminals.TERMINALS), so a new filter never edits this file, only regenerates
schema/wxgated.schema.json:

    python -m wxgated.compiler.schema > schema/wxgated.schema.json

Every object has `additionalProperties` (false, or a schema for free-form maps), so a
typo is an error, never a silently ignored key. Defaults live here as `default:` and
`validate.apply_defaults()` fills them in, so the compiler and the docs read one source.
Fragments may use `{"$ref": "#/$defs/duration"}` (also `positive_duration`, `size`,
`name`) or the helpers below.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

from wxgated.config.fragments import (
    DEFS,
    DRAFT,
    HASH_KEY,
    HOST,
    IDEMPOTENT_METHODS,
    LISTEN,
    REDIS_URL,
    RETRY_ON,
    SCHEMA_ID,
    TARGET_URL,
    VERSION,
    WORKERS,
    Schema,
    boolean,
    duration,
    enum,
    integer,
    methods,
    obj,
    size,
    statuses,
    string,
    with_meta,
)
from wxgated.http.target import ESCAPED_SLASH_ACTIONS
from wxgated.observe.tracing_config import schema as observe_schema
from wxgated.upstream.discovery.schema import discovery_schema

SERVER_NAME = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"  # a DNS name, as in SNI


def _server() -> Schema:
    return obj({
        "listen": string("0.0.0.0:8080", "public listener, host:port", pattern=LISTEN),
        "discovery_ready_timeout": duration("10s", "/readyz waits this long for every "
                                            "discovered upstream's first answer"),
        "workers": with_meta({"type": ["integer", "string"], "minimum": 1, "pattern": WORKERS},
                             1, 'worker processes: a number, or "auto" (one per CPU core)'),
        "trusted_proxies": with_meta({"type": "array", "items": {"type": "string"}}, [],
                                     "CIDRs whose X-Forwarded-For is believed"),
        "limits": obj({
            "max_body": size("1MiB", "largest request body (413 beyond), per route overridable"),
            "max_header": size("16KiB", "largest request head (431 beyond)"),
            "request_buffer": size("64KiB", "request bodies up to this size are read whole "
                                   "before an upstream connection is taken; larger ones "
                                   "stream once this much is in"),
            "max_connections": integer(0, "open client connections per worker (0: no limit)",
                                       0),
        }, default={}),
        "timeouts": obj({
            "header": duration("10s", "time to receive a request head"),
            "body": duration("60s", "time to receive a whole request body, from the end of "
                             "its head (408 and the connection closed beyond)"),
            "idle": duration("75s", "keep-alive connection idle time"),
            "shutdown_grace": duration("15s", "how long in-flight requests may finish on stop",
                                       positive=False),
        }, default={}),
        "normalize_path": boolean(True, "resolve . and .. segments and decode escaped "
                                  "unreserved characters before routing; the upstream gets "
                                  "the normalised path"),
        "merge_slashes": boolean(True, "merge // into / before routing"),
        "escaped_slashes": enum(list(ESCAPED_SLASH_ACTIONS), "reject",
                                "a path with %2F, a backslash or an encoded dot segment: "
                                "400, forwarded as is, or decoded into /"),
        "allow_underscores_in_headers": boolean(False, "forward client header names "
                                                "containing _ (dropped by default, as "
                                                "nginx does)"),
        "tls": obj({
            "cert": string(desc="PEM certificate chain file", minLength=1),
            "key": string(desc="PEM private key file", minLength=1),
        }, required=("cert", "key"), desc="TLS termination on the public listener"),
    }, default={})


def _state() -> Schema:
    return obj({
        "backend": enum(["memory", "redis"], "memory", "where shared state lives"),
        "redis": obj({
            "url": string(desc="redis://[:password@]host:port/db, rediss:// for TLS",
                          pattern=REDIS_URL),
            "cluster": boolean(False, "talk Redis Cluster"),
            "timeout": duration("200ms", "bound on every Redis call"),
            "prefix": string("wxgated:", "key prefix", pattern=r"^[^{}]*$"),
            "max_connections": integer(64, "connection pool size", 1),
        }),
        "encryption_key": string(desc="base64 of 32 random bytes: AES-256-GCM key for "
                                 "session keys at rest (required when sessions go to Redis)"),
    }, default={})


def _wechat_app_keys() -> dict[str, Schema]:
    """The keys one mini program can set: at the `wechat:` level (single-app form) or
    per app under `wechat.apps`."""
    return {
        "appid": string(desc="mini-program AppID", minLength=1),
        "secret": string(desc="mini-program AppSecret (use ${ENV})", minLength=1),
        "api_base": string("https://api.weixin.qq.com", "WeChat API base URL",
                           pattern=r"^https?://"),
        "session_ttl": duration("2h", "server-side session lifetime"),
        "push_token": string("", "message-push verification token"),
        "push_aes_key": string(desc="message-push EncodingAESKey: safe mode (use ${ENV})",
                               pattern=r"^[A-Za-z0-9+/]{43}$"),
        "push_max_age": duration("5m", "refuse pushes with an older timestamp (0 = off)",
                                 positive=False),
        "timeout": duration("5s", "per WeChat API call"),
        "retries": integer(2, "extra attempts on errcode -1 (system busy)", 0, 10),
        "backoff": duration("100ms", "first retry delay, doubling"),
        "token": obj({
            "source": enum(["stable_token", "token"], "stable_token",
                           "cgi-bin endpoint used for the access_token"),
            "refresh_before": duration("5m", "refresh this long before expiry"),
        }, default={}),
    }


def _wechat() -> Schema:
    app = obj(_wechat_app_keys(), required=("appid", "secret"))
    apps = {"type": "object", "minProperties": 1,
            "propertyNames": {"pattern": r"^[A-Za-z0-9_.-]+$"},
            "additionalProperties": app,
            "description": "several mini programs by name; each its own appid and secret"}
    hosts = {"type": "object", "additionalProperties": {"type": "string", "minLength": 1},
             "description": "request Host -> app name, for wechat routes without app:"}
    return obj({
        **_wechat_app_keys(),
        "apps": apps,
        "app_by_host": hosts,
        "backend": enum(["memory", "redis"], desc="session store (default: state.backend)"),
    })


def _jwt() -> Schema:
    key = obj({
        "kid": string(desc="key id, in the token header", minLength=1),
        "alg": enum(["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"]),
        "secret": string(desc="HMAC secret (HS*)", minLength=1),
        "pem": string(desc="PEM text of a private or public key (RS256/ES256/EdDSA)"),
        "pem_file": string(desc="file with the PEM key", minLength=1),
    }, required=("kid", "alg"))
    audience = {"type": ["string", "array"], "items": {"type": "string"}, "minItems": 1,
                "description": "aud claim set and required"}
    return obj({
        "issuer": string("wxgated", "iss claim set and required"),
        "audience": audience,
        "ttl": duration("2h", "token lifetime"),
        "leeway": duration("30s", "clock skew allowed on exp/nbf/iat", positive=False),
        "keys": with_meta({"type": "array", "minItems": 1, "items": key}, None,
                          "the first key signs; all keys verify"),
    }, required=("keys",))


def _upstream() -> Schema:
    target = obj({"url": string(desc="http(s)://host:port", pattern=TARGET_URL),
                  "weight": integer(1, "share of traffic", 1)}, required=("url",))
    up = obj({
        "targets": with_meta({"type": "array", "minItems": 1, "items": target}),
        "discovery": discovery_schema(),
        "balance": enum(["round_robin", "least_conn", "hash"], "round_robin"),
        "hash_key": string(None, "balance: hash key: ip (default), header.NAME, "
                           "cookie.NAME, claim.NAME, route, or parts joined with +",
                           pattern=HASH_KEY),
        "timeouts": obj({"connect": duration("1s"), "read": duration("30s")}, default={}),
        "retries": obj({
            "attempts": integer(1, "tries in all, the first included", 1, 10),
            "on": with_meta({"type": "array", "items": {
                "type": ["string", "integer"], "pattern": RETRY_ON,
                "minimum": 100, "maximum": 599}}, ["connect_error"],
                "connect_error, timeout, or statuses"),
            "methods": methods(IDEMPOTENT_METHODS, "methods that may be retried"),
            "per_try_timeout": duration(desc="timeout of each try (default: timeouts.read)"),
            "deadline": duration(desc="all tries together end by then"),
            "budget": with_meta({"type": "number", "minimum": 0, "maximum": 1}, 0.2,
                                "retries allowed as a share of requests"),
            "min_retries_per_sec": with_meta({"type": "number", "minimum": 0}, 3,
                                             "retries always allowed on a quiet upstream"),
        }, default={}),
        "health_check": obj({
            "path": string("/healthz", pattern=r"^/"),
            "interval": duration("5s"), "timeout": duration("1s"),
            "unhealthy_after": integer(3, "consecutive failures", 1),
            "healthy_after": integer(2, "consecutive successes", 1),
            "expect_status": statuses(["200-399"], 'statuses, "2xx" or ranges "200-399"'),
        }, desc="active checks (off unless present)"),
        "passive_health": obj({
            "enabled": boolean(True),
            "consecutive_failures": integer(5, minimum=1),
            "base_ejection": duration("30s", "ejection time × ejection count"),
            "max_ejection": duration("300s"),
            "ejection_decay": duration("60s", "clean time that forgives one past ejection"),
        }, default={}),
        "circuit_breaker": obj({
            "window": duration("10s"), "min_requests": integer(20, minimum=1),
            "failure_ratio": with_meta({"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                                       0.5),
            "open_for": duration("30s"), "half_open_requests": integer(3, minimum=1),
            "max_open_for": duration(desc="cap on open_for growth (default: 5×open_for, "
                                     "at most 300s)"),
            "failure_statuses": statuses(["5xx"], "statuses counted as failures"),
            "failure_errors": with_meta({"type": "array", "uniqueItems": True,
                                     "items": {"enum": ["connect_error", "timeout"]}},
                                    ["connect_error", "timeout"]),
        }, desc="per-target breaker (off unless present)"),
        "keepalive": obj({"max_idle": integer(64, "idle connections kept per target", 0),
                          "idle_timeout": duration("60s")}, default={}),
        "tls": obj({"verify": boolean(True), "ca_file": string(minLength=1),
                    "server_name": string(desc="the name sent as SNI and checked against "
                                          "the certificate (default: the target's host)",
                                          pattern=SERVER_NAME)}),
        "scheme": enum(["http", "https"], desc="discovered targets' scheme (registries give "
                       "host and port only); https uses `tls` (default: http)"),
    })
    # exactly one of targets (a fixed list) and discovery (a registry)
    up["anyOf"] = [{"required": ["targets"]}, {"required": ["discovery"]}]
    up["not"] = {"required": ["targets", "discovery"]}
    return up


def _filters(registry: dict[str, Any]) -> Schema:
    props = {name: copy.deepcopy(registry[name].schema) for name in sorted(registry)}
    item: Schema = {"type": "object", "minProperties": 1, "maxProperties": 1,
                    "additionalProperties": False, "properties": props,
                    "description": "one filter: {name: options}"}
    return with_meta({"type": "array", "items": item}, [], "run in order, around the terminal")


def _route(filters: dict[str, Any], terminals: dict[str, Any]) -> Schema:
    match = obj({
        "path": string(desc="/static, /:param, /*tail", minLength=1),
        "methods": methods(desc="default: any method"),
        "host": string(desc="exact host or *.example.com", pattern=HOST),
        "version": with_meta({"type": ["string", "integer"], "pattern": VERSION, "minimum": 0},
                             desc="API version this route serves (v1, 2, ...)"),
    }, required=("path",))
    props: dict[str, Schema] = {
        "name": {"$ref": "#/$defs/name"},
        "description": string(),
        "match": match,
        "filters": _filters(filters),
        "websocket": boolean(True, "pass WebSocket upgrades"),
        "websocket_idle": duration(desc="close a WebSocket after this long with no byte "
                                   "either way (default: 300s)"),
        "preserve_host": boolean(False, "send the client's Host upstream"),
        "timeout": duration(desc="overall deadline for the route"),
        "max_body": size(desc="overrides server.limits.max_body"),
    }
    for key in sorted(terminals):
        props[key] = copy.deepcopy(terminals[key])
    return obj(props, required=("name", "match"))


def terminal_schemas() -> dict[str, Schema]:
    """Terminal key → value schema, each from its own module (one source: the module)."""
    from wxgated.terminals import TERMINALS

    return {k: t.schema for k, t in TERMINALS.items()}


def build_schema() -> Schema:
    """The whole schema, with every registered filter and terminal."""
    from wxgated.filters import FILTERS
    from wxgated.versioning import SCHEMA as VERSIONING

    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "wxgated routes.yaml",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "version": with_meta({"const": 1}, 1, "config format version"),
            "server": _server(),
            "admin": obj({"listen": string("127.0.0.1:9090", pattern=LISTEN)}, default={}),
            "state": _state(),
            "wechat": _wechat(),
            "jwt": _jwt(),
            "upstreams": with_meta({"type": "object", "propertyNames": {"$ref": "#/$defs/name"},
                                "additionalProperties": _upstream()}, {}),
            "access_log": obj({"enabled": boolean(True, "one JSON line per request on "
                                                  "stdout")}, default={}),
            "observe": observe_schema(),
            "versioning": with_meta(copy.deepcopy(VERSIONING), {}),
            "routes": with_meta({"type": "array", "items": _route(FILTERS, terminal_schemas())},
                                []),
        },
        "$defs": copy.deepcopy(DEFS),
    }


def dumps(schema: Schema | None = None) -> str:
    return json.dumps(schema or build_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dumps())
