"""Static checks of deploy/: the Grafana dashboard's shape and the promtail config's
labels. (The metric names in both PromQL files are checked against a running gateway
in test_deploy_metrics.py; the alert rules by promtool in test_prometheus_rules.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "wxgated.json"
PROMTAIL = ROOT / "deploy" / "loki" / "promtail.yml"
# one stream per value: these would make a stream per request or per client
UNBOUNDED = {"trace_id", "path", "client_ip", "target", "status", "duration_ms", "ts"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_variables() -> None:
    d = dashboard()
    assert d["schemaVersion"] >= 39 and d["uid"] == "wxgated"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_LOKI"]["type"] == "datasource"
    assert {"job", "instance", "route", "trace_id"} <= set(variables)


def panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in d["panels"] if p["type"] != "row"]


def test_dashboard_panels_have_queries_and_unique_ids() -> None:
    ps = panels(dashboard())
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for p in ps:
        assert p["targets"] and all(t.get("expr") for t in p["targets"]), p["title"]
        assert p["datasource"]["uid"] in ("${DS_PROMETHEUS}", "${DS_LOKI}"), p["title"]


def test_dashboard_links_trace_ids_to_loki() -> None:
    links = [link for p in panels(dashboard())
             for o in p.get("fieldConfig", {}).get("overrides", [])
             if o["matcher"]["options"] == "trace_id"
             for prop in o["properties"] if prop["id"] == "links" for link in prop["value"]]
    assert links, "no trace id data link"
    url = links[0]["url"]
    assert url.startswith("/explore?") and "${DS_LOKI}" in url and "${__value.raw}" in url


def test_dashboard_counts_401s_by_reason_from_loki() -> None:
    """The access log's `reason` (docs/OPERATIONS.md) is charted, from Loki, not as a
    label promtail would have to add."""
    found = [p for p in panels(dashboard()) if "by (reason)" in p["targets"][0]["expr"]]
    assert len(found) == 1
    assert found[0]["datasource"]["uid"] == "${DS_LOKI}"
    assert "status = 401" in found[0]["targets"][0]["expr"]
    assert "reason" not in promtail_labels()


def promtail_labels() -> set[str]:
    """Every label name a promtail pipeline stage or journal config sets."""
    doc = yaml.safe_load(PROMTAIL.read_text())
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("labels", "static_labels") and isinstance(value, dict):
                    found.update(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for sc in doc["scrape_configs"]:
        walk(sc)
        found.update(r["target_label"] for r in sc.get("relabel_configs", []))
    return found


def test_promtail_labels_are_bounded() -> None:
    labels = promtail_labels()
    assert {"job", "route", "method", "status_class", "stream", "level"} <= labels
    assert labels & UNBOUNDED == set(), labels & UNBOUNDED


def test_promtail_reads_the_units_journal() -> None:
    doc = yaml.safe_load(PROMTAIL.read_text())
    journal = doc["scrape_configs"][0]["journal"]
    assert journal["matches"] == "_SYSTEMD_UNIT=wxgated.service"
    assert journal["labels"]["job"] == "wxgated"
