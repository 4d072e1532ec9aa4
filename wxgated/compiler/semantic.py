"""Checks JSON Schema cannot express, run on a config that passed the schema.

Cross-references (an upstream that exists), uniqueness (route names, jwt kids), one
terminal per route, route path syntax, two routes that no request could tell apart,
settings that only make sense together, and a `wechat: api` route without a logged-in
caller. `warnings` lists what is allowed but risky (printed by `wxgated check`). Each problem is an Issue at the line:col of the
value to fix. Filters and terminals check their own options at compile time
(SemanticError); this module covers what spans several parts of the file.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Callable, Iterator
from typing import Any

from wxgated.compiler.wechat_apps import wechat_apps
from wxgated.config.errors import Issue
from wxgated.config.loader import Document, iter_file_refs
from wxgated.config.units import parse_duration, parse_encryption_key
from wxgated.observe.tracing_config import check as tracing_settings
from wxgated.routing.tree import pattern_problem, pattern_shape
from wxgated.wechat.login_hook import reserved_claim_problems

Check = Callable[[Document, dict[str, Any]], Iterator[Issue]]


def check(doc: Document) -> list[Issue]:
    """Every semantic issue in a schema-valid document."""
    data = doc.data
    return [issue for fn in CHECKS for issue in fn(doc, data)]


def _routes(data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return list(enumerate(data.get("routes") or []))


def unique_route_names(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    first: dict[str, int] = {}
    for i, route in _routes(data):
        name = route["name"]
        if name in first:
            line = doc.mark(("routes", first[name], "name"))[0]
            yield doc.issue_at(("routes", i, "name"),
                               f'duplicate route name "{name}" (first used at line {line})')
        else:
            first[name] = i


def one_terminal(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    from wxgated.compiler.schema import terminal_schemas

    keys = set(terminal_schemas())
    for i, route in _routes(data):
        found = sorted((k for k in route if k in keys),
                       key=lambda k: doc.key_mark(("routes", i, k)))
        if not found:
            yield doc.issue_at(("routes", i), f'route "{route["name"]}" has no terminal: add '
                               f"one of {', '.join(sorted(keys))}")
        elif len(found) > 1:
            count = {2: "two", 3: "three"}.get(len(found), str(len(found)))
            listed = ", ".join(found[:-1]) + f" and {found[-1]}"
            yield doc.issue_at(("routes", i, found[1]),
                               f'route "{route["name"]}" has {count} terminals: {listed}',
                               at_key=True)


def upstream_refs(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    names = sorted(data.get("upstreams") or {})

    def unknown(name: str) -> str:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}"?)' if close else (
            " (no upstreams are defined)" if not names else f" (defined: {', '.join(names)})")
        return f'unknown upstream "{name}"{hint}'

    for i, route in _routes(data):
        ref = route.get("upstream")
        if isinstance(ref, str) and ref not in names:
            yield doc.issue_at(("routes", i, "upstream"), unknown(ref))
        wx = route.get("wechat")
        ref = wx.get("upstream") if isinstance(wx, dict) else None
        if isinstance(ref, str) and ref not in names:
            yield doc.issue_at(("routes", i, "wechat", "upstream"), unknown(ref))
        hook = wx.get("hook") if isinstance(wx, dict) else None
        ref = hook.get("upstream") if isinstance(hook, dict) else None
        if isinstance(ref, str) and ref not in names:
            yield doc.issue_at(("routes", i, "wechat", "hook", "upstream"), unknown(ref))
        for j, backend in _backends(route):
            ref = backend.get("upstream")
            if isinstance(ref, str) and ref not in names:
                yield doc.issue_at(("routes", i, "aggregate", "backends", j, "upstream"),
                                   unknown(ref))


def _backends(route: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    agg = route.get("aggregate")
    backends = agg.get("backends") if isinstance(agg, dict) else None
    if not isinstance(backends, list):
        return []
    return [(j, b) for j, b in enumerate(backends) if isinstance(b, dict)]


def route_paths(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    for i, route in _routes(data):
        path = route["match"]["path"]
        problem = pattern_problem(path)
        if problem:
            yield doc.issue_at(("routes", i, "match", "path"), f'invalid path "{path}": {problem}')


def _versions(match: dict[str, Any]) -> set[str | None]:
    version = match.get("version")
    if version is None:
        return {None}
    return {str(version).lower().removeprefix("v")}


def route_ties(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    """Same host, same path shape, a shared method and version: no request can pick."""
    seen: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = {}
    for i, route in _routes(data):
        match = route["match"]
        if pattern_problem(match["path"]):
            continue
        host = (match.get("host") or "").lower().rstrip(".") or None
        key = (host, pattern_shape(match["path"]))
        for j, other in seen.get(key, []):
            omatch = other["match"]
            if not _versions(match) & _versions(omatch):
                continue
            mine, theirs = match.get("methods"), omatch.get("methods")
            if mine and theirs:
                shared = sorted(set(mine) & set(theirs))
                if not shared:
                    continue
                what = ("method " if len(shared) == 1 else "methods ") + ", ".join(shared)
            else:
                both = mine or theirs
                what = ("methods " + ", ".join(both)) if both else "any method"
            line = doc.mark(("routes", j))[0]
            yield doc.issue_at(("routes", i, "match", "path"),
                               f'route "{route["name"]}" conflicts with route "{other["name"]}"'
                               f" (line {line}): same host, path shape and {what}")
            break
        seen.setdefault(key, []).append((i, route))


def state_settings(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    state = data.get("state") or {}
    wechat = data.get("wechat")
    backend = state.get("backend", "memory")
    if backend == "redis" and not (state.get("redis") or {}).get("url"):
        yield doc.issue_at(("state", "backend"),
                           'state.backend is "redis" but state.redis.url is not set')
    if isinstance(wechat, dict) and wechat.get("backend") == "redis" and backend != "redis" \
            and not (state.get("redis") or {}).get("url"):
        yield doc.issue_at(("wechat", "backend"),
                           'wechat.backend is "redis" but state.redis.url is not set')
    sessions = wechat.get("backend", backend) if isinstance(wechat, dict) else None
    if sessions == "redis" and not state.get("encryption_key"):
        # sessions is only set when wechat is a mapping
        at = ("wechat", "backend") if isinstance(wechat, dict) and "backend" in wechat \
            else ("state", "backend")
        yield doc.issue_at(at, "sessions are stored in Redis, so state.encryption_key is "
                           "required (a session_key must never sit in Redis in clear)")
    key = state.get("encryption_key")
    if isinstance(key, str) and key:
        try:
            parse_encryption_key(key)
        except ValueError:
            yield doc.issue_at(("state", "encryption_key"), "state.encryption_key must be 32 "
                               "random bytes as base64 or 64 hex digits (e.g. from "
                               "`openssl rand -base64 32`)")


def jwt_keys(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    jwt = data.get("jwt")
    if not isinstance(jwt, dict):
        return
    first: dict[str, int] = {}
    for i, key in enumerate(jwt.get("keys") or []):
        kid, alg = key["kid"], key["alg"]
        if kid in first:
            line = doc.mark(("jwt", "keys", first[kid], "kid"))[0]
            yield doc.issue_at(("jwt", "keys", i, "kid"),
                               f'duplicate jwt key id "{kid}" (first used at line {line})')
        first.setdefault(kid, i)
        given = [m for m in ("secret", "pem", "pem_file") if m in key]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            yield doc.issue_at(("jwt", "keys", i), f'jwt key "{kid}" needs exactly one of '
                               f"secret, pem, pem_file (found {what})")
            continue
        hmac = alg.startswith("HS")
        if hmac != (given[0] == "secret"):
            need = "a secret" if hmac else "a PEM key (pem or pem_file), not a secret"
            yield doc.issue_at(("jwt", "keys", i, given[0]),
                               f'jwt key "{kid}": {alg} needs {need}', at_key=True)
        elif given[0] == "pem" and "-----BEGIN" not in key["pem"]:
            yield doc.issue_at(("jwt", "keys", i, "pem"), f'jwt key "{kid}": pem must hold '
                               "PEM text (-----BEGIN ...); use pem_file for a path")


def files_exist(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    for path, value in iter_file_refs(data):
        resolved = doc.resolve_path(value)
        if not os.path.isfile(resolved):
            yield doc.issue_at(path, f"file not found: {resolved}")


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def server_settings(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    server = data.get("server") or {}
    for i, cidr in enumerate(server.get("trusted_proxies") or []):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield doc.issue_at(("server", "trusted_proxies", i),
                               f'invalid CIDR "{cidr}" (e.g. "10.0.0.0/8" or "127.0.0.1")')
    addrs = {}
    for section, default in (("server", "0.0.0.0:8080"), ("admin", "127.0.0.1:9090")):
        text = (data.get(section) or {}).get("listen", default)
        host, port = _listen(text)
        addrs[section] = (host, port)
        if port > 65535:
            yield doc.issue_at((section, "listen"), f"{section}.listen: port {port} > 65535")
    (h1, p1), (h2, p2) = addrs["server"], addrs["admin"]
    wild = ("", "0.0.0.0", "::")
    if p1 == p2 and p1 != 0 and (h1 == h2 or h1 in wild or h2 in wild):
        yield doc.issue_at(("admin", "listen"), "admin.listen must not share server.listen's "
                           "port (the admin endpoints are never public)")


def _seconds(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


def upstream_settings(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    for name, up in (data.get("upstreams") or {}).items():
        at = ("upstreams", name)
        seen: set[str] = set()
        yield from _discovery_settings(doc, name, up.get("discovery"))
        for j, target in enumerate(up.get("targets") or ()):
            url = target["url"].rstrip("/").lower()
            if url in seen:
                yield doc.issue_at(at + ("targets", j, "url"),
                                   f'upstream "{name}" lists target {target["url"]} twice')
            seen.add(url)
        if "hash_key" in up and up.get("balance") != "hash":
            yield doc.issue_at(at + ("hash_key",), "hash_key only applies with balance: hash",
                               at_key=True)
        for section, small, big in (("health_check", "timeout", "interval"),
                                    ("circuit_breaker", "open_for", "max_open_for"),
                                    ("passive_health", "base_ejection", "max_ejection")):
            part = up.get(section) or {}
            lo, hi = _seconds(part.get(small)), _seconds(part.get(big))
            if lo is not None and hi is not None and lo > hi:
                yield doc.issue_at(at + (section, small), f"{section}.{small} ({part[small]}) "
                                   f"must not exceed {big} ({part[big]})")


def _discovery_settings(doc: Document, name: str,
                        block: dict[str, Any] | None) -> Iterator[Issue]:
    dns = (block or {}).get("dns")
    if dns is None:
        return
    at = ("upstreams", name, "discovery", "dns")
    srv = dns.get("type", "A") == "SRV"
    if srv and "port" in dns:
        yield doc.issue_at(at + ("port",), "port does not apply to type: SRV (each SRV "
                           "record carries its port)", at_key=True)
    if not srv and "port" not in dns:
        yield doc.issue_at(at, f'upstream "{name}": discovery.dns of type '
                           f'{dns.get("type", "A")} needs a port', at_key=True)
    lo, hi = _seconds(dns.get("min_ttl")), _seconds(dns.get("max_ttl"))
    if lo is not None and hi is not None and lo > hi:
        yield doc.issue_at(at + ("min_ttl",), f"min_ttl ({dns['min_ttl']}) must not exceed "
                           f"max_ttl ({dns['max_ttl']})")


def _wechat_api(route: dict[str, Any]) -> dict[str, Any] | None:
    """The options of a `wechat: api` terminal ({} for the short form), else None."""
    wx = route.get("wechat")
    if wx == "api":
        return {}
    return wx if isinstance(wx, dict) and wx.get("action") == "api" else None


def _jwt_auth(route: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    for j, item in enumerate(route.get("filters") or ()):
        if isinstance(item, dict) and "jwt_auth" in item:
            return j, item["jwt_auth"] or {}
    return None


def wechat_api_auth(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    """`wechat: api` calls WeChat with the mini program's access_token: without a
    verified caller, anyone on the internet spends it (and picks the openid)."""
    for i, route in _routes(data):
        opts = _wechat_api(route)
        if opts is None or opts.get("public") is True:
            continue
        found = _jwt_auth(route)
        if found is None:
            yield doc.issue_at(("routes", i, "wechat"), f'route "{route["name"]}": wechat: api '
                               "calls WeChat with the gateway's access_token, so it needs a "
                               "jwt_auth filter (or public: true to allow anyone)", at_key=True)
        elif found[1].get("optional") is True:
            yield doc.issue_at(("routes", i, "filters", found[0], "jwt_auth", "optional"),
                               f'route "{route["name"]}": wechat: api needs a logged-in caller; '
                               "jwt_auth must not be optional (or set public: true on the "
                               "terminal)", at_key=True)


def wechat_hook_claims(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    """A login hook's claim must not replace one the gateway sets (a `sub` from the user
    service would log the caller in as someone else)."""
    for i, route in _routes(data):
        wx = route.get("wechat")
        hook = wx.get("hook") if isinstance(wx, dict) else None
        for at, msg in reserved_claim_problems(hook):
            yield doc.issue_at(("routes", i, "wechat", "hook", *at),
                               f'route "{route["name"]}": {msg}', at_key=True)


CHECKS: tuple[Check, ...] = (
    unique_route_names, one_terminal, upstream_refs, route_paths,
    route_ties, state_settings, jwt_keys, files_exist, server_settings, upstream_settings,
    wechat_api_auth, wechat_hook_claims, wechat_apps, tracing_settings,
)


def warnings(doc: Document) -> list[Issue]:
    """What is allowed but worth a second look; `wxgated check` prints these as
    "warning: ..." lines and still succeeds."""
    data = doc.data if isinstance(doc.data, dict) else {}
    return sorted((w for fn in WARNINGS for w in fn(doc, data)),
                  key=lambda w: (w.line, w.col, w.message))


def public_wechat_api(doc: Document, data: dict[str, Any]) -> Iterator[Issue]:
    for i, route in _routes(data):
        opts = _wechat_api(route)
        if opts is not None and opts.get("public") is True and _jwt_auth(route) is None:
            yield doc.issue_at(("routes", i, "wechat", "public"),
                               f'route "{route["name"]}": wechat: api is public: anyone can '
                               "call WeChat with the gateway's access_token", at_key=True)


WARNINGS: tuple[Check, ...] = (public_wechat_api,)
