"""`upstreams.<name>.discovery`: the config checks, and what a compiled upstream holds."""

from __future__ import annotations

from pathlib import Path

from tests.support.configcheck import problems
from wxgated.compiler.snapshot import load_snapshot
from wxgated.registry import Registry

ROUTES = """\
routes:
  - {name: r, match: {path: /}, upstream: u}
"""


def test_targets_and_discovery_are_exclusive(tmp_path: Path) -> None:
    both = """\
upstreams:
  u:
    targets: [{url: "http://127.0.0.1:1"}]
    discovery: {dns: {name: u.test, port: 80}}
""" + ROUTES
    assert problems(tmp_path, both) == ["3:5: upstreams.u: use only one of targets, discovery"]
    neither = "upstreams:\n  u: {balance: least_conn}\n" + ROUTES
    assert problems(tmp_path, neither) == ["2:3: upstreams.u needs one of: targets, discovery"]


def test_dns_block_semantics(tmp_path: Path) -> None:
    text = """\
upstreams:
  a: {discovery: {dns: {name: a.test}}}
  s: {discovery: {dns: {name: _x._tcp.s.test, type: SRV, port: 80}}}
  t: {discovery: {dns: {name: t.test, port: 80, min_ttl: 10s, max_ttl: 5s}}}
  r: {discovery: {dns: {name: r.test, port: 80, resolvers: [dns.example]}}}
routes:
  - {name: r1, match: {path: /a}, upstream: a}
"""
    out = problems(tmp_path, text)
    assert any("resolvers[0]" in p and "expected an IP address" in p for p in out), out
    fixed = text.replace("resolvers: [dns.example]", 'resolvers: ["10.0.0.2:5353"]')
    assert problems(tmp_path, fixed) == [
        '2:19: upstream "a": discovery.dns of type A needs a port',
        "3:58: port does not apply to type: SRV (each SRV record carries its port)",
        "4:58: min_ttl (10s) must not exceed max_ttl (5s)",
    ]


def test_a_compiled_discovered_upstream_starts_empty_and_resolves_nothing(
        tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("version: 1\nupstreams:\n  u: {discovery: {dns: {name: u.test, port: 80,"
                    " resolvers: ['127.0.0.1:1']}}}\n" + ROUTES)
    snap = load_snapshot(str(path), Registry())
    up = snap.upstreams["u"]
    assert up.targets == [] and up.watcher is not None
    assert up.watcher.last_refresh is None  # `wxgated check` and compiles query nothing
    assert up.balancer.pick(None) is None


def test_consul_and_nacos_blocks(tmp_path: Path) -> None:
    text = """\
upstreams:
  c: {discovery: {consul: {server: "consul:8500", service: api}}}
  n: {discovery: {nacos: {server: "http://127.0.0.1:8848", service: api, username: gw}}}
  m: {discovery: {nacos: {server: "http://127.0.0.1:8848", service: api, api: v3}}}
routes:
  - {name: r1, match: {path: /a}, upstream: c}
  - {name: r2, match: {path: /b}, upstream: n}
  - {name: r3, match: {path: /c}, upstream: m}
"""
    out = problems(tmp_path, text)
    assert any(p.startswith("2:") and "server" in p for p in out), out
    assert any(p.startswith("3:") and "password" in p for p in out), out
    assert any(p.startswith("4:") and "api" in p for p in out), out


def test_compiled_consul_and_nacos_upstreams(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("""\
version: 1
upstreams:
  c: {discovery: {consul: {server: "http://127.0.0.1:1", service: api, tag: v2,
                           datacenter: dc2, token: t, wait: 10s}}}
  n: {discovery: {nacos: {server: "http://127.0.0.1:1/", service: api, namespace: dev,
                          group: G, clusters: [A, B], username: u, password: p, api: v2}}}
routes:
  - {name: r1, match: {path: /a}, upstream: c}
  - {name: r2, match: {path: /b}, upstream: n}
""")
    snap = load_snapshot(str(path), Registry())
    consul = snap.upstreams["c"].watcher.provider
    assert consul.kind == "consul" and consul.wait == 10.0
    assert consul.query() == {"passing": "true", "tag": "v2", "dc": "dc2"}
    nacos = snap.upstreams["n"].watcher.provider
    assert nacos.url == "http://127.0.0.1:1/nacos/v2/ns/instance/list"
    assert nacos.query() == {"serviceName": "api", "groupName": "G", "healthyOnly": "true",
                             "namespaceId": "dev", "clusterName": "A,B"}
    assert nacos.login is not None and nacos.login.username == "u"
    assert snap.upstreams["n"].watcher.last_refresh is None  # compiling queries nothing


def test_a_wrong_token_or_password_value_is_not_echoed(tmp_path: Path) -> None:
    text = """\
upstreams:
  c: {discovery: {consul: {server: "http://c:8500", service: api, token: 123456789}}}
  n: {discovery: {nacos: {server: "http://n:8848", service: api, username: u,
                          password: 987654321}}}
routes:
  - {name: r1, match: {path: /a}, upstream: c}
  - {name: r2, match: {path: /b}, upstream: n}
"""
    out = problems(tmp_path, text)
    assert len(out) == 2 and all("(value hidden)" in p for p in out), out
    assert not any("123456789" in p or "987654321" in p for p in out), out
