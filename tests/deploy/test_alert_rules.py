"""The alert rules pass promtool's checks and unit tests, every alert has a test that makes it
fire, and the dashboard's queries are valid PromQL."""

from __future__ import annotations

import json
from pathlib import Path

from deploytools import DEPLOY, REPO, module, run, tool, yaml_load

PROM = DEPLOY / "prometheus"
ALERTS = PROM / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "fullstory-consumer.json"
# Grafana's variables, replaced by what they expand to so promtool can parse the queries.
GRAFANA_VARS = {"$__rate_interval": "1m", "$job": ".*", "$instance": ".*"}


def test_promtool_checks_the_rules() -> None:
    out = run(tool("promtool"), "check", "rules", str(ALERTS))
    assert "SUCCESS" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = run(tool("promtool"), "test", "rules", "alerts_test.yml", cwd=PROM)
    assert "SUCCESS" in out.stdout


def test_promtool_checks_the_compose_prometheus_config() -> None:
    run(tool("promtool"), "check", "config", str(PROM / "prometheus.yml"))


def test_every_alert_has_a_test_where_it_fires() -> None:
    alerts = {r["alert"] for g in yaml_load(ALERTS)["groups"] for r in g["rules"]}
    fired = {
        case["alertname"]
        for test in yaml_load(PROM / "alerts_test.yml")["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired, f"alerts without a firing test: {alerts - fired}"


def test_the_alerts_use_the_scrape_job_name_of_the_configs() -> None:
    jobs = {c["job_name"] for c in yaml_load(PROM / "prometheus.yml")["scrape_configs"]}
    assert "fullstory-consumer" in jobs
    assert 'job="fullstory-consumer"' in ALERTS.read_text()


def test_a_broken_rule_fails_the_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(ALERTS.read_text().replace("> 1000", "> > 1000", 1))
    assert run(tool("promtool"), "check", "rules", str(bad), check=False).returncode != 0


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    yaml = module("yaml")
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    rules = []
    for i, expr in enumerate(exprs):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run(tool("promtool"), "check", "rules", str(path), cwd=REPO)


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "fullstory-consumer"
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
