"""The compiled form of an `aggregate:` block: steps, their dependencies, their limits.

Everything that can go wrong in the config is found here, at compile time, with its
position: an unknown upstream, a `{param.x}` the route's path does not have, a
`{resp.x...}` or `after:` naming no step, a dependency cycle, duplicate names.

A step depends on the steps in its `after:` list and on every step whose answer its
templates read (`{resp.user.id}` makes it wait for `user`), so `after:` is only needed
for ordering without data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wxgated.aggregate.select import Shape
from wxgated.aggregate.template import Template, compile_template
from wxgated.config.units import parse_duration as duration

DEFAULT_TIMEOUT = 10.0
_PARAM = re.compile(r"^[:*](.+)$")


class PlanError(ValueError):
    """A config mistake; `path` is its position under the route's `aggregate` key."""

    def __init__(self, msg: str, path: list[str | int]) -> None:
        super().__init__(msg)
        self.path = path


@dataclass(frozen=True)
class Step:
    name: str
    upstream_name: str
    upstream: Any  # wxgated.upstream.targets.Upstream
    method: str
    path: Template
    headers: tuple[tuple[bytes, Template], ...]
    into: str | None  # `as`: the key in data; None merges an object into the root
    include: bool  # False: the answer only feeds later steps
    optional: bool
    timeout: float
    after: tuple[str, ...]
    shape: Shape


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    timeout: float
    status_on_partial: int


def route_params(route: dict[str, Any]) -> set[str] | None:
    """Param names of the route's path pattern; None when it has no single path."""
    path = (route.get("match") or {}).get("path")
    if not isinstance(path, str):
        return None
    return {m.group(1) for seg in path.split("/") if (m := _PARAM.match(seg))}


def _name(b: dict[str, Any]) -> str:
    return str(b.get("name") or b.get("as") or b["upstream"])


def _templates(b: dict[str, Any], at: list[str | int]) -> tuple[Template, tuple]:
    try:
        path = compile_template(str(b["path"]))
    except ValueError as e:
        raise PlanError(str(e), [*at, "path"]) from None
    if not path.parts or not isinstance(path.parts[0], str) or \
            not path.parts[0].startswith("/"):
        raise PlanError("path must start with '/'", [*at, "path"])
    headers = []
    for k, v in (b.get("headers") or {}).items():
        try:
            headers.append((k.lower().encode("latin-1"), compile_template(str(v), False)))
        except ValueError as e:
            raise PlanError(str(e), [*at, "headers", k]) from None
    return path, tuple(headers)


def _step(b: dict[str, Any], i: int, overall: float, ctx: Any,
          params: set[str] | None) -> Step:
    at: list[str | int] = ["backends", i]
    upstream = ctx.upstreams.get(b["upstream"])
    if upstream is None:
        raise PlanError(f"unknown upstream {b['upstream']!r}", [*at, "upstream"])
    path, headers = _templates(b, at)
    templates = [path, *(t for _, t in headers)]
    for t in templates:
        for p in t.placeholders:
            if p.source == "param" and params is not None and p.name not in params:
                raise PlanError(f"{{param.{p.name}}}: the route's path has no :{p.name}",
                                [*at, "path"])
    after = b.get("after") or []
    after = [after] if isinstance(after, str) else list(after)
    deps = sorted(set(after).union(*(t.steps for t in templates)))
    try:
        timeout = min(duration(b["timeout"]), overall) if "timeout" in b else overall
        shape = Shape.parse(b)
    except ValueError as e:
        raise PlanError(str(e), at) from None
    return Step(
        name=_name(b), upstream_name=b["upstream"], upstream=upstream,
        method=str(b.get("method", "GET")).upper(), path=path, headers=headers,
        into=b.get("as"), include=bool(b.get("include", True)),
        optional=bool(b.get("optional", False)), timeout=timeout, after=tuple(deps),
        shape=shape,
    )


def _check_graph(steps: list[Step]) -> None:
    index = {s.name: i for i, s in enumerate(steps)}
    for i, s in enumerate(steps):
        for dep in s.after:
            if dep not in index:
                raise PlanError(f"step {s.name!r} waits for unknown step {dep!r}",
                                ["backends", i])
            if dep == s.name:
                raise PlanError(f"step {s.name!r} waits for itself", ["backends", i])
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name):], name])
            raise PlanError(f"dependency cycle: {cycle}", ["backends", index[name]])
        state[name] = 1
        for dep in steps[index[name]].after:
            visit(dep, [*trail, name])
        state[name] = 2

    for s in steps:
        visit(s.name, [])


def compile_plan(cfg: dict[str, Any], route: dict[str, Any], ctx: Any) -> Plan:
    """Raises PlanError for config mistakes."""
    try:
        overall = duration(cfg.get("timeout", DEFAULT_TIMEOUT))
    except ValueError as e:
        raise PlanError(str(e), ["timeout"]) from None
    backends = cfg.get("backends") or []
    if not backends:
        raise PlanError("aggregate needs at least one backend", ["backends"])
    params = route_params(route)
    steps = [_step(b, i, overall, ctx, params) for i, b in enumerate(backends)]
    seen: dict[str, int] = {}
    for i, s in enumerate(steps):
        if s.name in seen:
            raise PlanError(f"two backends are named {s.name!r}; give one a `name:`",
                            ["backends", i])
        seen[s.name] = i
    _check_graph(steps)
    return Plan(tuple(steps), overall, int(cfg.get("status_on_partial", 200)))
