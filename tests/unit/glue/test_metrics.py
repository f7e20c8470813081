from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.glue.metrics import METRICS, emit, stage_metrics, stat_names

README = Path(__file__).resolve().parents[3] / "README.md"


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
    assert stage_metrics({"status": status}, event, result) == expected


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


def test_emit_never_fails_the_task() -> None:
    class Broken(RecordingStats):
        def incr(self, stat: str, count: int = 1, *, tags: Any = None) -> None:
            raise OSError("statsd unreachable")

    emit({}, succeeded=True, tags={}, stats=Broken())


def test_readme_metrics_table_is_the_code_table() -> None:
    rows = re.findall(r"^\| `kbatch\.([a-z_.]+)` \| (\w+) \| ([\w ]+?) \|", README.read_text(), re.M)
    assert {name: (kind, unit) for name, kind, unit in rows} == {
        name: (kind, unit) for name, (kind, unit, _) in METRICS.items()
    }
