"""The shipped alert rules and dashboard (deploy/prometheus, deploy/grafana) refer only to series
of the metric table (glue/metrics.METRICS through the statsd_exporter mapping) and to the rules'
own recordings; the dashboard is a well-formed Grafana dashboard. promtool itself runs in
tests/integration/test_prometheus_rules.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from airflow_provider_kbatch.glue.metrics import prometheus_series

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "kbatch-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "kbatch-pipeline.json"
_NAME = re.compile(r"(?<![\w:$\"'])([a-zA-Z_][a-zA-Z0-9_]*(?::[a-zA-Z0-9_]+)+|kbatch_[a-zA-Z0-9_]+)")


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def names_in(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(_NAME.findall(without_strings))


def test_names_in_finds_series_and_recordings() -> None:
    assert names_in(
        'sum by (a) (rate(kbatch_x_total{dag_id="kbatch_not_a_name"}[1h])) / dag:kbatch_y:rate1h'
    ) == {
        "kbatch_x_total",
        "dag:kbatch_y:rate1h",
    }


def test_rules_use_only_table_series_and_their_own_recordings() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    known = prometheus_series() | recorded
    used = set().union(*(names_in(r["expr"]) for r in rules()))
    assert used and used <= known, sorted(used - known)
    alerts = [r for r in rules() if "alert" in r]
    assert {a["alert"] for a in alerts} == {
        "KbatchStageFailureRateHigh",
        "KbatchDagFailureRateHigh",
        "KbatchIndexFailuresRising",
    }
    for alert in alerts:  # a window and a hold, never a single event
        assert alert["for"] and re.search(r"\[1h\]|increase1h", alert["expr"]), alert["alert"]
        assert {"summary", "description"} <= set(alert["annotations"])


def test_dashboard_is_a_grafana_dashboard_of_table_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "kbatch-pipeline" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "dag_id"}
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    recorded = {r["record"] for r in rules() if "record" in r}
    known = prometheus_series() | recorded
    used: set[str] = set()
    for panel in panels:
        assert (
            set(panel["gridPos"]) == {"x", "y", "w", "h"}
            and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        )
        assert panel["type"] in {"timeseries", "bargauge", "stat", "table"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert "$dag_id" in target["expr"], (panel["title"], target["expr"])
            used |= names_in(target["expr"])
    assert used <= known, sorted(used - known)
    # the dashboard shows the figures: duration, queue wait, failures by reason, retries,
    # bytes and records, results size, live progress
    for series in ("kbatch_job_duration_seconds", "kbatch_job_queue_wait_seconds", "kbatch_index_failures_total",
                   "kbatch_pod_retries_total", "kbatch_stage_bytes", "kbatch_stage_records", "kbatch_results_bytes",
                   "kbatch_progress_completed"):  # fmt: skip
        assert any(name.startswith(series) for name in used), series
