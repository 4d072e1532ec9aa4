"""Build the Snapshot's upstreams from `upstreams:`, reusing long-lived targets.

A target (its connection pool, breaker and health state) is kept across reloads under
("target", upstream, url) as long as the settings that shape it are unchanged. Breaker
and health state are made with the target rather than attached to a live one, so a
reload that fails to compile leaves the serving targets exactly as they were; changing
a breaker or health setting therefore renews that target (and its pool).
Active health checks are built here but started by the serving Gateway after the swap,
so `wxgated check` and a supervisor's validating copy probe nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.config.spec import duration, file_contents, frozen
from wxgated.observe.metrics import CIRCUIT_STATE
from wxgated.registry import Registry
from wxgated.upstream.balancer import Balancer, make_balancer
from wxgated.upstream.breaker import CircuitBreaker, failure_rules
from wxgated.upstream.discovery import make_provider
from wxgated.upstream.discovery.base import Watcher
from wxgated.upstream.discovery.targets import DiscoveredTargets
from wxgated.upstream.health import ActiveChecker, HealthGroup, TargetHealth, health_gauge
from wxgated.upstream.retry import RetryBudget, RetryPolicy
from wxgated.upstream.targets import Target, TargetSpec, Upstream


def build_upstreams(cfg: dict[str, Any], registry: Registry,
                    services: dict[str, Any]) -> dict[str, Upstream]:
    return {name: build_upstream(name, ucfg, registry) for name, ucfg in cfg.items()}


def build_upstream(name: str, ucfg: dict[str, Any], registry: Registry) -> Upstream:
    tls = ucfg.get("tls", {})
    cb = ucfg.get("circuit_breaker")
    hc = ucfg.get("health_check")
    ph = ucfg.get("passive_health")
    guards = (frozen(cb), frozen((hc, ph)))
    watcher = discovered = None
    if "scheme" in ucfg and "discovery" not in ucfg:
        raise SemanticError(f"scheme applies to discovered targets; static targets say it in "
                            f"their url ({ucfg['scheme']}://host:port)",
                            ("upstreams", name, "scheme"))
    if "discovery" in ucfg:
        watcher, discovered = _discovery(name, ucfg, registry, guards)
        targets = discovered.targets
    else:
        targets = []
        for t in ucfg["targets"]:
            spec = _target_spec(ucfg, t["url"], int(t.get("weight", 1)))
            # file_contents: a CA bundle replaced at the same path needs a new TLS context
            targets.append(registry.keep(("target", name, spec.url),
                                         (spec, guards, file_contents(tls)),
                                         partial(_new_target, name, spec, cb, hc, ph)))
        HealthGroup([t.health for t in targets])
    checker = None
    if hc is not None:
        # a discovered upstream's checker follows its targets (retarget), so only hc keys it
        keys = None if watcher is not None else [t.key for t in targets]
        checker = registry.keep(("checker", name), frozen((hc, keys)),
                                lambda: ActiveChecker.from_config(name, targets, hc))
    timeouts = ucfg.get("timeouts", {})
    retry = budget = None
    if "retries" in ucfg:
        retry = RetryPolicy.from_config(ucfg["retries"])
        budget = registry.keep(("budget", name), frozen(ucfg["retries"]),
                               lambda: RetryBudget.for_policy(retry))
    rebalance = _balancer_factory(ucfg)
    up = Upstream(name, targets, rebalance(targets),
                  connect_timeout=duration(timeouts.get("connect"), 1.0),
                  read_timeout=duration(timeouts.get("read"), 30.0),
                  retry=retry, budget=budget, checker=checker)
    up.rebalance, up.watcher, up.discovered = rebalance, watcher, discovered
    return up


def _target_spec(ucfg: dict[str, Any], url: str, weight: int) -> TargetSpec:
    keepalive = ucfg.get("keepalive", {})
    tls = ucfg.get("tls", {})
    return TargetSpec(url=url, weight=weight, max_idle=int(keepalive.get("max_idle", 64)),
                      idle_timeout=duration(keepalive.get("idle_timeout"), 60.0),
                      tls_verify=bool(tls.get("verify", True)), ca_file=tls.get("ca_file"),
                      server_name=tls.get("server_name"))


def _balancer_factory(ucfg: dict[str, Any]) -> Callable[[list[Target]], Balancer]:
    """The upstream's balancer kind as a function of its targets (discovery rebuilds)."""
    hash_key = None
    if ucfg.get("balance") == "hash":
        from wxgated.limits.clientkey import compile_key

        hash_key = compile_key(ucfg.get("hash_key", "ip"))
    return partial(make_balancer, ucfg.get("balance", "round_robin"), hash_key=hash_key)


def _discovery(name: str, ucfg: dict[str, Any], registry: Registry,
               guards: Any) -> tuple[Watcher, DiscoveredTargets]:
    """The upstream's Watcher (kept while its discovery block is unchanged) and its target
    set (kept while the target-shaping settings are unchanged; a new one starts from the
    watcher's last answer). Both start with the serving Gateway (`start_discovery`)."""
    block = ucfg["discovery"]
    watcher = registry.keep(("discovery", name), frozen(block),
                            lambda: Watcher(name, make_provider(block)))
    scheme = ucfg.get("scheme", "http")
    shape = (_target_spec(ucfg, "", 1), guards, file_contents(ucfg.get("tls", {})), scheme)
    make = partial(_discovered_target, name, ucfg)
    discovered = registry.keep(("discovered", name), shape,
                               lambda: DiscoveredTargets(name, make, watcher.endpoints, scheme))
    return watcher, discovered


def _discovered_target(name: str, ucfg: dict[str, Any], url: str, weight: int) -> Target:
    return _new_target(name, _target_spec(ucfg, url, weight), ucfg.get("circuit_breaker"),
                       ucfg.get("health_check"), ucfg.get("passive_health"))


# Factories for registry.keep, called only when the registry has no live object, so the
# metric children they create belong to breakers and health states actually in use.
def _new_target(name: str, spec: TargetSpec, cb: Mapping[str, Any] | None,
                hc: Mapping[str, Any] | None, ph: Mapping[str, Any] | None) -> Target:
    target = Target(name, spec)
    target.failure_statuses, target.failure_errors = failure_rules(cb)
    target.breaker = None if cb is None else _new_breaker(cb, name, target.key)
    target.health = _new_health(hc, ph, name, target.key)
    return target


def _new_breaker(cb: Mapping[str, Any], upstream: str, key: str) -> CircuitBreaker:
    return CircuitBreaker.from_config(cb, CIRCUIT_STATE.labels(upstream, key).set)


def _new_health(hc: Mapping[str, Any] | None, ph: Mapping[str, Any] | None, upstream: str,
                key: str) -> TargetHealth:
    return TargetHealth.from_config(hc, ph, health_gauge(upstream, key))
