"""Build the Snapshot's upstreams from `upstreams:`, reusing long-lived targets.

A target (its connection pool, breaker and health state) is kept across reloads under
("target", upstream, url) as long as the settings that shape it are unchanged.
"""

from __future__ import annotations

from typing import Any

from wxgated.config.spec import duration, frozen
from wxgated.registry import Registry
from wxgated.upstream.balancer import make_balancer
from wxgated.upstream.pool import Target, TargetSpec, Upstream


def build_upstreams(cfg: dict[str, Any], registry: Registry,
                    services: dict[str, Any]) -> dict[str, Upstream]:
    return {name: build_upstream(name, ucfg, registry) for name, ucfg in cfg.items()}


def build_upstream(name: str, ucfg: dict[str, Any], registry: Registry) -> Upstream:
    keepalive = ucfg.get("keepalive", {})
    tls = ucfg.get("tls", {})
    targets = []
    for t in ucfg["targets"]:
        spec = TargetSpec(url=t["url"], weight=int(t.get("weight", 1)),
                          max_idle=int(keepalive.get("max_idle", 64)),
                          idle_timeout=duration(keepalive.get("idle_timeout"), 60.0),
                          tls_verify=bool(tls.get("verify", True)), ca_file=tls.get("ca_file"))
        targets.append(registry.keep(("target", name, spec.url), spec,
                                     lambda spec=spec: Target(name, spec)))
    timeouts = ucfg.get("timeouts", {})
    hash_key = None
    if ucfg.get("balance") == "hash":
        from wxgated.clientkey import compile_key

        hash_key = compile_key(ucfg.get("hash_key", "ip"))
    balancer = make_balancer(ucfg.get("balance", "round_robin"), targets, hash_key)
    _ = frozen  # specs of policies below are compared as frozen config fragments
    return Upstream(name, targets, balancer,
                    connect_timeout=duration(timeouts.get("connect"), 1.0),
                    read_timeout=duration(timeouts.get("read"), 30.0))
