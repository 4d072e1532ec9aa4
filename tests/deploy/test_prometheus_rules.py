"""deploy/prometheus: the alert rules load (`promtool check rules`) and each alert fires on
the series it is meant for and not on others (`promtool test rules`, alerts_test.yml).

promtool is required, not optional: scripts/test.sh installs Debian's `prometheus`
package (which ships promtool) when it is missing. A skipped test here would let a
broken rule file reach production silently.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "alerts.yml"
RULE_TESTS = DEPLOY / "alerts_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe is not None, (
        "promtool is missing: run bash scripts/test.sh (it installs it), or "
        "apt-get install -y prometheus (Debian ships promtool in that package)")
    return subprocess.run([exe, *args], cwd=DEPLOY, capture_output=True, text=True,
                          timeout=120)


def test_rules_check() -> None:
    res = promtool("check", "rules", RULES.name)
    assert res.returncode == 0, res.stdout + res.stderr


def test_rules_unit_tests() -> None:
    res = promtool("test", "rules", RULE_TESTS.name)
    assert res.returncode == 0, res.stdout + res.stderr


def alert_names() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_firing_test() -> None:
    """An alert without a test that expects it to fire is an alert nobody checked."""
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fired = {case["alertname"] for t in doc["tests"] for case in t.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert set(alert_names()) - fired == set()


def test_operations_doc_points_at_the_rules_file() -> None:
    """The docs explain the alerts; the YAML lives only in deploy/ (no copy to drift)."""
    doc = (DEPLOY.parent.parent / "docs" / "OPERATIONS.md").read_text()
    section = doc.split("## Alert rules", 1)[1].split("\n## ", 1)[0]
    assert "deploy/prometheus/alerts.yml" in section
    assert not re.search(r"^\s*expr:", section, re.M), "alert YAML copied into the docs"
    for name in alert_names():
        assert name in section, f"{name} is not explained in docs/OPERATIONS.md"
