from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.glue.metrics import (
    METRICS,
    emit,
    emit_live,
    failure_reasons,
    metrics_table,
    progress_metrics,
    stage_metrics,
    stat_names,
    statsd_mapping,
)
from airflow_provider_kbatch.status import job_outcome

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"


@pytest.mark.parametrize(
    ("status", "event", "result", "expected"),
    [
        (
            {"startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:01:30Z"},
            {"queued_seconds": 2.5},
            {"failed_indexes": "1,4-6", "output": {"bytes": 2048, "records": 10}},
            {
                "job.duration": 90000.0,
                "job.queue_wait": 2500.0,
                "index.failed": 4.0,
                "stage.bytes": 2048.0,
                "stage.records": 10.0,
            },
        ),
        ({}, {}, {"failed_indexes": ""}, {"job.queue_wait": 0.0, "index.failed": 0.0}),
        (  # a failed Job has no completionTime: its Failed condition ends the duration
            {
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"},
                    {"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:00:07Z"},
                ],
            },
            {},
            {"failed_indexes": "0-2"},
            {"job.duration": 7000.0, "job.queue_wait": 0.0, "index.failed": 3.0},
        ),
        (  # a Failed condition that is not True does not end anything
            {
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [
                    {"type": "Failed", "status": "False", "lastTransitionTime": "2026-01-01T00:00:07Z"}
                ],
            },
            {},
            {},
            {"job.queue_wait": 0.0, "index.failed": 0.0},
        ),
    ],
)
def test_stage_metrics(status, event, result, expected):
    figures = stage_metrics({"status": status}, event, result)
    assert figures.pop("pod.retries") == float(status.get("failed") or 0)
    assert figures.pop("results.bytes") == len(json.dumps(result, separators=(",", ":")))
    assert figures.pop("results.count") == 0.0
    assert figures == expected


def test_retries_and_results_size() -> None:
    result = {"results": {"0": {"rows": 1}, "1": {"rows": 2}}, "results_total": 5}
    figures = stage_metrics({"status": {"failed": 3}}, {}, result)
    assert (figures["pod.retries"], figures["results.count"]) == (3.0, 5.0)
    assert figures["results.bytes"] == len(json.dumps(result, separators=(",", ":")))


def failed_pod(reason: str | None, pod_reason: str | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": 137 if reason == "OOMKilled" else 1}
    if reason:
        term["reason"] = reason
    status: dict[str, Any] = {
        "phase": "Failed",
        "containerStatuses": [{"name": "c", "state": {"terminated": term}}],
    }
    if pod_reason:
        status["reason"] = pod_reason
    return {"metadata": {"name": f"p-{reason}-{pod_reason}"}, "status": status}


def test_failure_reasons_count_failed_pods_by_reason() -> None:
    pods = [
        failed_pod("OOMKilled"),
        failed_pod("OOMKilled"),
        failed_pod(None),
        failed_pod("Error", pod_reason="Evicted"),  # the pod's reason says more
        {"metadata": {"name": "ok"}, "status": {"phase": "Succeeded"}},
    ]
    assert failure_reasons(pods) == {"OOMKilled": 2, "Error": 1, "Evicted": 1}


def test_live_progress_from_the_outcome() -> None:
    job = {
        "spec": {"completions": 10, "completionMode": "Indexed"},
        "status": {"completedIndexes": "0-3", "failedIndexes": "7", "active": 4},
    }
    assert progress_metrics(job_outcome(job)) == {
        "progress.completed": 4.0,
        "progress.failed": 1.0,
        "progress.active": 4.0,
    }
    stats = RecordingStats()
    emit_live(
        progress_metrics(job_outcome(job)),
        tags={"dag_id": "d", "task_id": "t", "namespace": "n"},
        stats=stats,
    )
    assert ("gauge", "kbatch.dag.d.t.progress.completed", 4.0, None) in stats.calls


def test_stat_names_carry_the_stage_without_tags() -> None:
    tags = {"dag_id": "etl daily", "task_id": "load", "namespace": "ns"}
    assert stat_names("job.duration", tags) == (
        "kbatch.job.duration",
        "kbatch.dag.etl_daily.load.job.duration",
    )
    assert len(stat_names("job.duration", {"dag_id": "d" * 300, "task_id": "t"})[1]) == 250


class RecordingStats:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []

    def timing(self, stat: str, value: Any, *, tags: Any = None) -> None:
        self.calls.append(("timing", stat, value, tags))

    def incr(self, stat: str, count: int = 1, *, tags: Any = None) -> None:
        self.calls.append(("incr", stat, count, tags))

    def gauge(self, stat: str, value: Any, *, tags: Any = None) -> None:
        self.calls.append(("gauge", stat, value, tags))


def test_emit_sends_every_figure_tagged_and_per_stage() -> None:
    stats = RecordingStats()
    tags = {"dag_id": "etl", "task_id": "load", "namespace": "ns"}
    emit({"job.duration": 1500.0, "index.failed": 2.0}, succeeded=False, tags=tags, stats=stats)
    assert stats.calls == [
        ("incr", "kbatch.job.failed", 1, tags),
        ("incr", "kbatch.dag.etl.load.job.failed", 1, None),
        ("timing", "kbatch.job.duration", 1500.0, tags),
        ("timing", "kbatch.dag.etl.load.job.duration", 1500.0, None),
        ("gauge", "kbatch.index.failed", 2.0, tags),
        ("gauge", "kbatch.dag.etl.load.index.failed", 2.0, None),
    ]


def test_reasons_are_a_tag_and_part_of_the_per_stage_name() -> None:
    stats = RecordingStats()
    tags = {"dag_id": "etl", "task_id": "load", "namespace": "ns"}
    emit({}, succeeded=True, tags=tags, stats=stats, reasons={"OOMKilled": 2})
    assert stats.calls[2:] == [
        ("incr", "kbatch.index.failures", 2, {**tags, "reason": "OOMKilled"}),
        ("incr", "kbatch.dag.etl.load.index.failures.OOMKilled", 2, None),
    ]


def test_emit_never_fails_the_task() -> None:
    class Broken(RecordingStats):
        def incr(self, stat: str, count: int = 1, *, tags: Any = None) -> None:
            raise OSError("statsd unreachable")

    emit({}, succeeded=True, tags={}, stats=Broken())


def test_readme_metrics_table_is_the_code_table() -> None:
    assert metrics_table() in README.read_text(), "README.md: paste glue.metrics.metrics_table()"
    rows = re.findall(r"^\| `kbatch\.([a-z_.]+)` \| (\w+) \| ([\w ]+?) \|", README.read_text(), re.M)
    assert {name: (kind, unit) for name, kind, unit in rows} == {
        name: (m.kind, m.unit) for name, m in METRICS.items()
    }


def test_every_emitted_name_is_in_the_table() -> None:
    stats = RecordingStats()
    figures = {**stage_metrics({"status": {"startTime": "2026-01-01T00:00:00Z", "completionTime":
               "2026-01-01T00:00:01Z", "failed": 1}}, {"queued_seconds": 1}, {"output": {"bytes": 1, "records": 1}}),
               **progress_metrics(job_outcome({"spec": {"completions": 1}, "status": {}}))}  # fmt: skip
    emit(figures, succeeded=True, tags={}, stats=stats, reasons={"Error": 1})
    emit({}, succeeded=False, tags={}, stats=stats)
    emitted = {call[1].removeprefix("kbatch.") for call in stats.calls if call[3] is not None}
    assert emitted == set(METRICS)


def test_the_shipped_statsd_mapping_is_generated_from_the_table() -> None:
    shipped = ROOT / "deploy" / "prometheus" / "statsd-mapping.yaml"
    assert shipped.read_text() == statsd_mapping(), "regenerate: glue.metrics.statsd_mapping()"
    import yaml

    mappings = yaml.safe_load(shipped.read_text())["mappings"]
    assert {m["match"].removeprefix("airflow.kbatch.") for m in mappings if m.get("action") != "drop"} == set(
        METRICS
    )
