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


SERVER = r"^https?://[^\s/?#]+/?$"


def consul_schema() -> Schema:
    """`discovery.consul`: which service, from which agent, with which ACL token."""
    return obj({
        "server": string(desc="the Consul HTTP API, e.g. http://127.0.0.1:8500",
                         pattern=SERVER),
        "service": string(desc="the service name", minLength=1),
        "tag": string(desc="only instances with this tag", minLength=1),
        "datacenter": string(desc="the datacenter to ask (default: the agent's own)",
                             minLength=1),
        "token": string(desc="ACL token, sent as X-Consul-Token", minLength=1),
        "wait": duration("30s", "how long Consul may hold a blocking query"),
    }, required=("server", "service"))


def nacos_schema() -> Schema:
    """`discovery.nacos`: which service, where in Nacos, and the login if auth is on."""
    s = obj({
        "server": string(desc="the Nacos server, e.g. http://127.0.0.1:8848", pattern=SERVER),
        "namespace": string(desc="namespace id (default: public)", minLength=1),
        "group": string("DEFAULT_GROUP", "the service's group", minLength=1),
        "service": string(desc="the service name", minLength=1),
        "clusters": with_meta({"type": "array", "minItems": 1,
                               "items": string(minLength=1, pattern=r"^[^,]+$")}, None,
                              "only instances in these clusters (default: all)"),
        "username": string(desc="log in as this user (Nacos auth enabled)", minLength=1),
        "password": string(desc="the user's password", minLength=1),
        "api": enum(["v1", "v2"], "v1", "which Open API path to poll "
                    "(/nacos/v1/ns/instance/list or /nacos/v2/...)"),
    }, required=("server", "service"))
    s["dependentRequired"] = {"username": ["password"], "password": ["username"]}
    return s


def discovery_schema() -> Schema:
    """Exactly one provider per upstream (`maxProperties`)."""
    s = obj({"dns": dns_schema(), "consul": consul_schema(), "nacos": nacos_schema()}, desc="where the targets come from, instead of `targets`")
    s["minProperties"] = s["maxProperties"] = 1
    return s
