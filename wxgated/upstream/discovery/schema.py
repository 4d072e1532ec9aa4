"""The `upstreams.<name>.discovery` part of the config schema, one entry per provider.

A new provider adds its options here (and its keys to docs/CONFIG.md), next to its
module; wxgated.compiler.schema only places `discovery_schema()` in the upstream.
"""

from __future__ import annotations

from wxgated.config.fragments import (
    RESOLVER,
    Schema,
    duration,
    enum,
    integer,
    obj,
    string,
    with_meta,
)


def dns_schema() -> Schema:
    """`discovery.dns`: what to resolve, where, and how often."""
    return obj({
        "name": string(desc="the name to resolve (no search domains are appended)",
                       minLength=1),
        "type": enum(["A", "AAAA", "SRV"], "A", "A/AAAA: every address on `port`; SRV: "
                     "host, port and weight from the records"),
        "port": integer(None, "targets' port (A and AAAA only; SRV records carry theirs)",
                        1, 65535),
        "resolvers": with_meta({"type": "array", "items": string(pattern=RESOLVER)}, None,
                           "DNS servers to ask (default: the host's /etc/resolv.conf)"),
        "min_ttl": duration("1s", "re-resolve no more often than this"),
        "max_ttl": duration("60s", "re-resolve at least this often, whatever the TTL"),
    }, required=("name",))


def discovery_schema() -> Schema:
    """Exactly one provider per upstream (`maxProperties`)."""
    s = obj({"dns": dns_schema()}, desc="where the targets come from, instead of `targets`")
    s["minProperties"] = s["maxProperties"] = 1
    return s
