from __future__ import annotations

import pytest

from airflow_provider_kbatch.glue.metrics import stage_metrics


@pytest.mark.parametrize(
    "status, event, result, expected",
    [
        (
            {"startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:01:30Z"},
            {"queued_seconds": 2.5},
            {"failed_indexes": "1,4-6", "output": {"bytes": 2048, "records": 10}},
            {
                "kbatch.job.duration": 90000.0,
                "kbatch.job.queue_wait": 2500.0,
                "kbatch.index.failed": 4.0,
                "kbatch.stage.bytes": 2048.0,
                "kbatch.stage.records": 10.0,
            },
        ),
        ({}, {}, {"failed_indexes": ""}, {"kbatch.job.queue_wait": 0.0, "kbatch.index.failed": 0.0}),
    ],
)
def test_stage_metrics(status, event, result, expected):
    assert stage_metrics({"status": status}, event, result) == expected
