"""Compile a validated config into an immutable Snapshot the hot path can run on.

Everything that can be decided once is decided here: routes go into the radix tree,
each route's filters and terminal become one Pipeline, upstreams get their targets and
policies. Long-lived pieces come from the Registry so a reload keeps them when their
config did not change. A failed compile leaves no trace (`Registry.abort`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from wxgated.config.context import CompileContext
from wxgated.config.errors import ConfigError, Issue, SemanticError
from wxgated.config.spec import identity, worker_count
from wxgated.config.units import parse_size
from wxgated.filters import FILTERS
from wxgated.gateway.engine import Pipeline
from wxgated.observe.metrics import RouteMetrics
from wxgated.registry import Registry, aclose_quietly, close_quietly
from wxgated.routing import RouteConflict, Router
from wxgated.terminals import TERMINALS
from wxgated.upstream.build import build_upstreams
from wxgated.versioning import VersionSources, normalize


@dataclass(frozen=True, eq=False)
class Route:
    name: str
    path: str
    methods: tuple[str, ...]
    host: str | None
    terminal: str
    filters: tuple[str, ...]
    pipeline: Pipeline  # its filters by phase around its terminal (wxgated.gateway.engine)
    metrics: RouteMetrics


@dataclass(frozen=True, eq=False)
class Snapshot:
    source: str
    sha256: str
    version: int
    loaded_at: float
    config: dict[str, Any]
    router: Router
    routes: tuple[Route, ...]
    upstreams: dict[str, Any]
    services: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    versions: VersionSources | None = None  # set when routes are versioned
    versioned: dict[str, Router] = field(default_factory=dict)  # version -> its routes
    warnings: tuple[Issue, ...] = ()  # allowed but risky (semantic.warnings): `check` shows them

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "sha256": self.sha256, "version": self.version,
                "loaded_at": self.loaded_at, "routes": len(self.routes),
                "upstreams": sorted(self.upstreams)}


def load_snapshot(path: str, registry: Registry) -> Snapshot:
    """Read, validate and compile `path`; raises ConfigError with every issue found."""
    from wxgated.compiler.validate import load_and_validate

    return _compiled(load_and_validate(path), registry)


def compile_text(text: str, source: str, registry: Registry) -> Snapshot:
    """As load_snapshot, for config text fetched from elsewhere (a config center);
    `source` names it in issues and in the Snapshot."""
    from wxgated.compiler.validate import parse_and_validate

    return _compiled(parse_and_validate(text, source), registry)


def _compiled(doc: Any, registry: Registry) -> Snapshot:
    from wxgated.compiler.semantic import warnings

    try:
        snap = compile_document(doc, registry)
    except BaseException:
        registry.abort()
        raise
    return replace(snap, warnings=tuple(warnings(doc)))


def compile_document(doc: Any, registry: Registry) -> Snapshot:
    cfg = doc.data
    ctx = CompileContext(config=cfg, registry=registry, source=doc.source)
    issues: list[Issue] = []
    try:
        _check_shared_state(cfg)
        ctx.services = _services(cfg, registry)
        ctx.upstreams = build_upstreams(cfg.get("upstreams", {}), registry, ctx.services)
    except SemanticError as exc:
        raise ConfigError([doc.issue_at(exc.path, exc.message)]) from None
    router = Router()
    versioned: dict[str, Router] = {}
    routes = []
    for i, rcfg in enumerate(cfg.get("routes", [])):
        try:
            route = _compile_route(rcfg, i, ctx)
        except SemanticError as exc:
            issues.append(doc.issue_at(("routes", i, *exc.path), exc.message))
            continue
        match = rcfg["match"]
        version = normalize(match["version"]) if "version" in match else None
        tree = router if version is None else versioned.setdefault(version, Router())
        try:
            tree.add(match["path"], route_methods(rcfg), match.get("host"), route)
        except RouteConflict as exc:
            issues.append(doc.issue_at(("routes", i, "match"), str(exc)))
            continue
        routes.append(route)
    if issues:
        raise ConfigError(issues)
    return Snapshot(source=doc.source, sha256=doc.sha256, version=int(cfg.get("version", 1)),
                    loaded_at=time.time(), config=cfg, router=router, routes=tuple(routes),
                    upstreams=ctx.upstreams, services=ctx.services,
                    files=tuple(doc.referenced_files()),
                    versions=VersionSources.parse(cfg.get("versioning"))
                    if versioned or "versioning" in cfg else None,
                    versioned=versioned)


def _check_shared_state(cfg: dict[str, Any]) -> None:
    """Sessions in per-process memory would log users out whenever another worker
    answers: several workers need a shared state backend once logins are involved."""
    if worker_count(cfg) <= 1 or cfg.get("state", {}).get("backend", "memory") != "memory":
        return
    for route in cfg.get("routes", []):
        if "wechat" in route or any("jwt_auth" in f for f in route.get("filters", [])):
            raise SemanticError(
                f"server.workers > 1 with state.backend memory: sessions would not be shared "
                f"between workers (route {route['name']!r} uses them); use state.backend redis",
                ("server", "workers"))


def route_methods(rcfg: dict[str, Any]) -> list[str] | None:
    """The methods a route answers: its own, plus those its filters answer themselves
    (`cors` takes the preflight OPTIONS)."""
    methods = rcfg["match"].get("methods")
    if not methods:
        return methods
    extra = [m for item in rcfg.get("filters", []) for name in item
             for m in FILTERS[name].own_methods if m not in methods]
    return [*methods, *dict.fromkeys(extra)] if extra else methods


def _compile_route(rcfg: dict[str, Any], index: int, ctx: CompileContext) -> Route:
    name = rcfg["name"]
    ctx.route_name = name
    ctx.route = rcfg
    terminal_key = next(k for k in TERMINALS if k in rcfg)
    try:
        handler = TERMINALS[terminal_key].build(rcfg[terminal_key], rcfg, ctx)
    except SemanticError as exc:
        raise SemanticError(exc.message, (terminal_key, *exc.path)) from None
    filter_names: list[str] = []
    filters = []
    for j, item in enumerate(rcfg.get("filters", [])):
        (fname, fcfg), = item.items()
        ctx.filter_ordinal = filter_names.count(fname)
        try:
            filters.append(FILTERS[fname](fcfg, ctx))
        except SemanticError as exc:
            raise SemanticError(exc.message, ("filters", j, fname, *exc.path)) from None
        filter_names.append(fname)
    match = rcfg["match"]
    max_body = parse_size(rcfg["max_body"]) if "max_body" in rcfg else None
    return Route(name=name, path=match["path"], methods=tuple(match.get("methods") or ()),
                 host=match.get("host"), terminal=terminal_key, filters=tuple(filter_names),
                 pipeline=Pipeline(filters, handler, max_body), metrics=RouteMetrics(name))


def _services(cfg: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """Process-wide services, rebuilt only when their part of the config changes."""
    from wxgated.state import open_backend

    state_cfg = cfg.get("state", {"backend": "memory"})
    state = registry.keep(("state",), identity(state_cfg), lambda: open_backend(state_cfg))
    services: dict[str, Any] = {"state": state}
    try:
        from wxgated.wechat import build_services
    except ImportError:
        return services
    # identity(): a PEM rotated in place (same pem_file path) must rebuild the key ring
    spec = identity({k: cfg.get(k) for k in ("wechat", "jwt", "state")})
    services.update(registry.keep(("wechat",), spec, lambda: _Bundle(build_services(cfg, state))))
    return services


class _Bundle(dict):
    """A dict of services that the registry can close as one."""

    def close(self) -> None:
        for svc in self.values():
            close_quietly(svc)

    async def aclose(self) -> None:
        for svc in self.values():
            await aclose_quietly(svc)
