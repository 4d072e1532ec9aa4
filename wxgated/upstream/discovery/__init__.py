"""Service discovery for upstream pools: the targets come from a registry, not the file.

One module per provider (dns.py, consul.py, nacos.py, each with a class implementing
`base.Provider`), registered in `PROVIDERS` under the key
that names it in `upstreams.<name>.discovery`. The refresh loop, the keep-last-known
rule and the bookkeeping live once, in `base.Watcher`; turning endpoints into live
`Target`s (reuse, drain, balancer rebuild) lives in `targets.DiscoveredTargets`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wxgated.upstream.discovery.base import Provider


def _dns(cfg: Mapping[str, Any]) -> Provider:
    from wxgated.upstream.discovery.dns import DnsProvider

    return DnsProvider.from_config(cfg)


def _consul(cfg: Mapping[str, Any]) -> Provider:
    from wxgated.upstream.discovery.consul import ConsulProvider

    return ConsulProvider.from_config(cfg)


def _nacos(cfg: Mapping[str, Any]) -> Provider:
    from wxgated.upstream.discovery.nacos import NacosProvider

    return NacosProvider.from_config(cfg)


PROVIDERS: dict[str, Callable[[Mapping[str, Any]], Provider]] = {
    "dns": _dns, "consul": _consul, "nacos": _nacos}


def make_provider(block: Mapping[str, Any]) -> Provider:
    """The provider named by a `discovery:` block (the schema allows exactly one key)."""
    (kind, cfg), = block.items()
    return PROVIDERS[kind](cfg)


def start_discovery(upstreams: Mapping[str, Any]) -> None:
    """Bind a live Snapshot's discovered upstreams to their target sets and start (or
    keep) their watchers. Called by the serving Gateway after a swap, never by
    `wxgated check`, so validating a config queries no registry."""
    for up in upstreams.values():
        if up.watcher is None:
            continue
        up.discovered.bind(up)
        up.set_targets(up.discovered.targets)  # also retargets a kept health checker
        up.watcher.start(up.discovered.apply)


def discovery_settled(upstreams: Mapping[str, Any], timeout: float, now: float) -> bool:
    """Every discovered upstream has had an answer, or `timeout` passed (for /readyz)."""
    return all(up.discovered.settled(timeout, now) for up in upstreams.values()
               if up.discovered is not None)
