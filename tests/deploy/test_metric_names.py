"""Every metric a dashboard panel or an alert rule queries exists in the service's registry, with
the labels the queries use: a renamed metric otherwise leaves an empty panel or a silent alert."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from deploytools import DEPLOY, REPO, yaml_load
from prometheus_client.metrics import MetricWrapperBase

from consumer.metrics import PREFIX, Metrics

DASHBOARD = DEPLOY / "grafana" / "fullstory-consumer.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
OPERATIONS = REPO / "docs" / "operations.md"
BUDGET = {
    "fullstory_consumer_budget_limit_events",
    "fullstory_consumer_budget_used_events",
    "fullstory_consumer_budget_cycle_end_timestamp_seconds",
    "fullstory_consumer_budget_warn_ratio",
}
POLICY_SKIP_REASONS = {"budget_exhausted", "event_not_included", "event_excluded", "sampled_out"}

METRIC = re.compile(r"\b(?:fullstory_consumer|process)_[a-z0-9_]+")
# A selector: metric{label op "value", ...}
SELECTOR = re.compile(r"\b((?:fullstory_consumer|process)_[a-z0-9_]+)\{([^}]*)\}")
LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
TARGET_LABELS = {"job", "instance"}
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "unknown": ("",),
}


def exposed() -> dict[str, set[str] | None]:
    """Series names the registry exposes → their label names (None where not knowable)."""
    metrics = Metrics()
    labels: dict[str, tuple[str, ...]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            labels[value._name] = tuple(value._labelnames)
    names: dict[str, set[str] | None] = {}
    for family in metrics.registry.collect():
        known = labels.get(family.name)
        if known is None and family.name.endswith("_total"):
            known = labels.get(family.name.removesuffix("_total"))
        for suffix in SUFFIXES.get(family.type, ("",)):
            extra = {"le"} if suffix == "_bucket" else set()
            names[family.name + suffix] = None if known is None else {*known, *extra}
    return names


def dashboard_exprs() -> Iterator[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            yield variable["definition"]


def alert_exprs() -> Iterator[str]:
    for group in yaml_load(ALERTS)["groups"]:
        for rule in group["rules"]:
            yield rule["expr"]


def _check(exprs: list[str]) -> list[str]:
    names = exposed()
    problems = []
    for expr in exprs:
        for name in sorted(set(METRIC.findall(expr))):
            if name not in names:
                problems.append(f"{name} (in {expr!r})")
        for name, body in SELECTOR.findall(expr):
            known = names.get(name)
            if known is None:
                continue
            for label in LABEL.findall(body):
                if label not in known | TARGET_LABELS:
                    problems.append(f"{name} has no label {label!r} (in {expr!r})")
    return problems


def test_the_registry_exposes_the_process_and_build_metrics() -> None:
    names = exposed()
    assert "fullstory_consumer_build_info" in names
    assert "process_cpu_seconds_total" in names
    assert "process_resident_memory_bytes" in names


def test_every_dashboard_metric_exists() -> None:
    assert not _check(list(dashboard_exprs())), "\n".join(_check(list(dashboard_exprs())))


def test_every_alert_metric_exists() -> None:
    assert not _check(list(alert_exprs())), "\n".join(_check(list(alert_exprs())))


def test_the_check_catches_a_wrong_name_and_a_wrong_label() -> None:
    problems = _check(
        [
            "rate(fullstory_consumer_records_consumed[5m])",
            'rate(fullstory_consumer_records_consumed_total{partition="1"}[5m])',
        ]
    )
    assert len(problems) == 2, problems


def test_the_dashboard_covers_what_operators_need() -> None:
    used = {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    needed = {
        "fullstory_consumer_consumer_lag_records",
        "fullstory_consumer_consumer_lag_seconds",
        "fullstory_consumer_records_consumed_total",
        "fullstory_consumer_records_delivered_total",
        "fullstory_consumer_records_skipped_total",
        "fullstory_consumer_records_dead_lettered_total",
        "fullstory_consumer_fullstory_requests_total",
        "fullstory_consumer_fullstory_request_duration_seconds_bucket",
        "fullstory_consumer_fullstory_retries_total",
        "fullstory_consumer_fullstory_request_pace",
        "fullstory_consumer_fullstory_concurrency_limit",
        "fullstory_consumer_paused_partitions",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    }
    assert needed <= used, needed - used


def test_the_alerts_cover_lag_dead_letters_errors_and_down() -> None:
    exprs = list(alert_exprs())
    joined = "\n".join(exprs)
    assert "fullstory_consumer_consumer_lag_records" in joined
    assert "fullstory_consumer_records_dead_lettered_total" in joined
    assert 'status_class="4xx"' in joined
    assert "5xx" in joined
    assert any(e.startswith("up{") for e in exprs)
    assert any(e.startswith("absent(up{") for e in exprs)


def test_every_metric_is_in_the_operations_metrics_table() -> None:
    """docs/operations.md names each metric (without the prefix) in its Metrics section."""
    text = OPERATIONS.read_text()
    section = text[text.index("## Metrics") : text.index("## Alerts")]
    missing = []
    for value in vars(Metrics()).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name.removeprefix(f"{PREFIX}_")
            if value._type == "counter":
                name += "_total"
            if f"`{name}`" not in section:
                missing.append(name)
    assert not missing, missing
    assert all(f"`{reason}`" in section for reason in POLICY_SKIP_REASONS)


def test_the_budget_is_on_the_dashboard_and_alerted() -> None:
    exprs = list(dashboard_exprs())
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used >= BUDGET, BUDGET - used
    skipped = [e for e in exprs if "records_skipped_total" in e and "budget_exhausted" in e]
    assert skipped and all(reason in skipped[0] for reason in POLICY_SKIP_REASONS)
    alerts = {r["alert"]: r["expr"] for g in yaml_load(ALERTS)["groups"] for r in g["rules"]}
    budget = {a: e for a, e in alerts.items() if a.startswith("FullStoryBudget")}
    assert set(budget) == {
        "FullStoryBudgetWarning",
        "FullStoryBudgetExhausted",
        "FullStoryBudgetExhaustionPredicted",
    }
    assert "fullstory_consumer_budget_warn_ratio" in budget["FullStoryBudgetWarning"]
    # Every member reports the group-wide count: aggregate with max, never sum.
    for expr in budget.values():
        assert "max by (destination)" in expr and "sum by (destination)" not in expr
    # rate() on the used gauge would read a new cycle's drop to 0 as a counter reset.
    assert "rate(fullstory_consumer_budget_used_events" not in "\n".join(budget.values())
