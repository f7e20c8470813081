"""finish_stage: the task's result from the Job as it ended (in-memory hook, real ledger rules)."""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_kbatch.engine.outcome import finish_stage
from airflow_provider_kbatch.spec.names import JobIdentity

ID = JobIdentity(dag_id="d", task_id="t", run_id="r1", try_number=1)


class Hook:
    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods, self.data = pods, {}

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self.pods

    def update_config_map_cas(self, namespace, name, mutate, **kwargs):
        self.data = mutate(dict(self.data))
        return self.data

    def read_pod_log(self, *args: Any, **kwargs: Any) -> str:
        return "boom\n"


def _job(mode: str, completions: int, conditions: list[tuple[str, str]], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "j", "uid": "u1", "annotations": {}},
        "spec": {"completions": completions, "completionMode": mode},
        "status": {
            "conditions": [{"type": t, "status": "True", "reason": r} for t, r in conditions],
            **status,
        },
    }


def _started(hook: Hook, completions: int) -> None:
    from airflow_provider_kbatch.engine import ledger
    from airflow_provider_kbatch.spec.intervals import IndexSet

    ledger.attempt_started(
        hook, "ns", ID, job="j", uid="u1", spec_hash="h", index_map=IndexSet.full(completions)
    )


def test_a_complete_nonindexed_job_completed_every_index():
    hook = Hook([])
    _started(hook, 3)
    job = _job("NonIndexed", 3, [("Complete", "CompletionsReached")], succeeded=3)
    result, failure = finish_stage(hook, "ns", ID, job, "h", completions=3, log=logging.getLogger("t"))
    assert failure is None
    assert result["completed_indexes"] == "0-2" and result["summary"].startswith("3/3")


def test_an_indexed_job_reports_its_completed_indexes_only():
    hook = Hook([])
    _started(hook, 4)
    job = _job("Indexed", 4, [("Complete", "SuccessPolicy")], completedIndexes="0,2")
    result, failure = finish_stage(hook, "ns", ID, job, "h", completions=4, log=logging.getLogger("t"))
    assert failure is None and result["completed_indexes"] == "0,2"
