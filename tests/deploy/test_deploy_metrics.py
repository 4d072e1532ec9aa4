"""The dashboard and the alert rules use only metric names a real gateway exports, and
`wxgated run` logs its start-up line once.

A renamed metric otherwise breaks a dashboard panel or silences an alert without any
error anywhere: PromQL over a name nobody exports is just an empty result. So the names
are taken from the PromQL in deploy/grafana/wxgated.json and deploy/prometheus/alerts.yml
and looked up in the /metrics of a running `wxgated run` (prometheus_client writes
HELP/TYPE lines for a family even before it has samples, so all of them show up).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from tests.support.gateway import GatewayProcess
from tests.support.recording_upstream import RecordingUpstream
from wxgated import __version__, build

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "wxgated.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SECRET = "deploy-metrics-secret-0123456789abcdef"
# made by Prometheus itself for every scrape target, not by the gateway
SCRAPE_SERIES = {"up"}

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "and",
            "or", "unless", "bool", "inf", "nan", "atan2"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)?\s*(?:,\s*\w+)?\s*\)")


def metric_names(expr: str) -> set[str]:
    """The metric names in one PromQL expression (or Grafana variable query)."""
    expr = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)  # Grafana variables
    expr = _STRINGS.sub(" ", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    names = set(m.group(1) for m in _LABEL_VALUES.finditer(expr) if m.group(1))
    expr = _LABEL_VALUES.sub(" ", expr)  # label_values(metric, label): not the label
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    expr = _GROUPING.sub(" ", expr)
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        if not m.group(2) and m.group(1).lower() not in KEYWORDS:
            names.add(m.group(1))
    return names


def test_metric_names_extractor() -> None:
    expr = ('histogram_quantile(0.99, sum by (route, le) (rate(x_bucket{job=~"$job", '
            'a="b{c}"}[$__rate_interval]))) / on (route) group_left y_total offset 1d '
            '> bool 3 and label_values(z_gauge{job="j", i=~"$i"}, instance)')
    assert metric_names(expr) == {"x_bucket", "y_total", "z_gauge"}


def dashboard_exprs() -> list[str]:
    """Every PromQL string in the dashboard: panel targets, variables, annotations."""
    out: list[str] = []

    def walk(node: Any, prometheus: bool) -> None:
        if isinstance(node, dict):
            ds = node.get("datasource")
            if isinstance(ds, dict) and "type" in ds:
                prometheus = ds["type"] == "prometheus"
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str) and prometheus:
                    out.append(value)
                else:
                    walk(value, prometheus)
        elif isinstance(node, list):
            for item in node:
                walk(item, prometheus)

    walk(json.loads(DASHBOARD.read_text()), False)
    return out


def alert_exprs() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def exported_names(text: str) -> set[str]:
    """Sample names /metrics can carry, from its TYPE lines (histograms: _bucket etc.)."""
    names: set[str] = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = m.groups()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
    return names


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    up = RecordingUpstream()
    yield up
    up.stop()


def gateway_config(upstream_url: str) -> dict[str, Any]:
    """Upstreams (health checks, breaker), jwt, rate limit, cache: every metric family."""
    return {
        "jwt": {"issuer": "wxgated", "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}]},
        "upstreams": {"users": {
            "targets": [{"url": upstream_url}],
            "health_check": {"path": "/healthz", "interval": "1s", "timeout": "1s"},
            "circuit_breaker": {"window": "10s", "min_requests": 20, "failure_ratio": 0.5,
                                "open_for": "30s"},
        }},
        "routes": [
            {"name": "ping", "match": {"path": "/ping"}, "respond": {"json": {"pong": 1}}},
            {"name": "users", "match": {"path": "/api/users/:id"},
             "filters": [{"jwt_auth": {"check_session": False}},
                         {"rate_limit": {"rate": 1, "per": "1m", "burst": 1, "key": "ip"}},
                         {"strip_prefix": 1}],
             "upstream": "users"},
        ],
    }


def get(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture(scope="module")
def gw(upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-deploy"), gateway_config(upstream.url))
    proc.start()
    now = int(time.time())
    token = jwt.encode({"iss": "wxgated", "sub": "o-1", "iat": now, "exp": now + 600},
                       SECRET, algorithm="HS256", headers={"kid": "k1"})
    auth = {"Authorization": f"Bearer {token}"}
    assert get(proc.url + "/ping") == 200
    assert get(proc.url + "/nope") == 404
    assert get(proc.url + "/api/users/1") == 401
    assert [get(proc.url + "/api/users/1", auth) for _ in range(2)] == [200, 429]
    yield proc
    proc.stop()


def test_dashboard_and_alerts_use_only_exported_metrics(gw: GatewayProcess) -> None:
    time.sleep(0.6)  # counted values reach prometheus twice a second
    text = gw.metrics()
    exported = exported_names(text)
    used: dict[str, set[str]] = {}
    for where, exprs in (("dashboard", dashboard_exprs()), ("alerts", alert_exprs())):
        for expr in exprs:
            used.setdefault(where, set()).update(metric_names(expr))
    assert len(used["dashboard"]) >= 12 and len(used["alerts"]) >= 8  # not vacuous
    for where, names in used.items():
        missing = sorted(names - exported - SCRAPE_SERIES)
        assert missing == [], f"{where} uses metrics the gateway does not export: {missing}"
    # the requests above did reach the families the panels are about
    for sample in ("wxgated_requests_total{", "wxgated_ratelimit_rejected_total{",
                   "wxgated_upstream_requests_total{", "wxgated_upstream_target_healthy{",
                   "wxgated_workers_serving 1.0", "wxgated_workers_configured 1.0"):
        assert sample in text, sample


def test_start_up_line_once(gw: GatewayProcess) -> None:
    lines = [ln for ln in gw.stderr().splitlines() if f"wxgated {__version__} (build" in ln]
    assert len(lines) == 1, gw.stderr()
    line = lines[0]
    assert " INFO wxgated: " in line
    # the subprocess runs the build this test process does (same tree, same environment)
    assert f"(build {build.describe()}) listening on http://127.0.0.1:{gw.port}" in line
    assert f"admin http://127.0.0.1:{gw.admin_port}" in line
    assert "2 routes, 1 upstreams, 1 worker, state backend memory" in line


def test_start_up_line_once_with_workers(tmp_path: Path) -> None:
    """Several workers: the supervisor logs it, no worker repeats it."""
    config = {"server": {"workers": 2},
              "routes": [{"name": "ping", "match": {"path": "/ping"},
                          "respond": {"json": {"pong": 1}}}]}
    proc = GatewayProcess(tmp_path, config).start()
    try:
        deadline = time.monotonic() + 10
        while "wxgated_workers_serving 2.0" not in proc.metrics():
            assert time.monotonic() < deadline, proc.metrics()
            time.sleep(0.2)
        assert "wxgated_workers_configured 2.0" in proc.metrics()
    finally:
        proc.stop()
    lines = [ln for ln in proc.stderr().splitlines() if f"(build {build.describe()})" in ln]
    assert len(lines) == 1, proc.stderr()
    assert "1 routes, 0 upstreams, 2 workers, state backend memory" in lines[0]
