"""The sample alerting rules and Grafana dashboard: promtool checks and fires every rule, and both name only real metrics."""

import json
import re
import subprocess
from pathlib import Path

from tests.test_cli_metrics import promtool  # noqa: F401 - the fixture
from tqcli.observability.metrics import FAMILIES

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "sample-configs" / "prometheus-rules.yml"
RULE_TESTS = REPO / "tests" / "data" / "prometheus-rules-test.yml"
DASHBOARD = REPO / "sample-configs" / "grafana-dashboard.json"


def known_series() -> set[str]:
    names = set()
    for family in FAMILIES:
        names.add(family.name)
        if family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
    return names


def test_promtool_checks_the_rules(promtool):  # noqa: F811
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_fires_every_alert_in_its_unit_tests(promtool):  # noqa: F811
    done = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    tests = RULE_TESTS.read_text()
    for alert in re.findall(r"- alert: (\w+)", RULES.read_text()):
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels", tests), f"no test fires {alert}"


def test_the_rules_name_only_metrics_tqcli_writes():
    used = set(re.findall(r"\btqcli_[a-z_]+", RULES.read_text()))
    assert used and used <= known_series(), used - known_series()


def test_the_grafana_dashboard_parses_and_names_only_metrics_that_exist():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [item["query"] for item in dashboard["templating"]["list"] if item["type"] == "query"]
    used = {name for expr in expressions for name in re.findall(r"\btqcli_[a-z_]+", expr)}
    assert used <= known_series(), used - known_series()
    assert {"tqcli_tasks", "tqcli_task_duration_seconds_bucket", "tqcli_task_wait_seconds_bucket", "tqcli_dlq_tasks"} <= used
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
