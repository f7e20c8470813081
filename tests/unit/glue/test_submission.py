"""plan_submission: adopt, create, resume or do nothing -- decided from what exists (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_kbatch.engine.submission import GENERATION_ANNOTATION, is_ours, plan_submission
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import (
    ANNOTATION_INDEX_MAP,
    ANNOTATION_SPEC_HASH,
    JobIdentity,
    identity_labels,
    job_name,
)

ID = JobIdentity(dag_id="etl", task_id="ingest", run_id="scheduled__2026-01-01T00:00:00+00:00", try_number=2)


def job(
    generation: int,
    spec: str = "h1",
    *,
    finished: str | None = None,
    index_map: str = "0-9",
    completed: str = "",
) -> dict[str, Any]:
    conditions = [{"type": finished, "status": "True"}] if finished else []
    return {
        "metadata": {
            "name": job_name(ID, generation),
            "uid": f"uid-{generation}",
            "labels": identity_labels(ID, generation),
            "annotations": {
                ANNOTATION_SPEC_HASH: spec,
                ANNOTATION_INDEX_MAP: index_map,
                GENERATION_ANNOTATION: str(generation),
            },
        },
        "spec": {"completions": len(IndexSet.parse(index_map))},
        "status": {"conditions": conditions, "completedIndexes": completed},
    }


def plan(existing: list[dict[str, Any]], completed: str = "", resume: bool = True, spec: str = "h1"):
    return plan_submission(
        identity=ID,
        spec_hash=spec,
        completions=10,
        existing_jobs=existing,
        completed=IndexSet.parse(completed),
        resume=resume,
    )


@pytest.mark.parametrize(
    "existing, completed, resume, action, generation, index_map",
    [
        pytest.param([], "", True, "create", 2, "0-9", id="nothing-yet-creates-this-try"),
        pytest.param(
            [job(1, finished="Failed")], "0-3,5-9", True, "create", 2, "4", id="resume-runs-only-the-rest"
        ),
        pytest.param(
            [job(1, finished="Failed")], "0-3,5-9", False, "create", 2, "0-9", id="resume-off-reruns-all"
        ),
        pytest.param([job(1)], "", True, "adopt", 1, "0-9", id="running-same-spec-is-adopted"),
        pytest.param(
            [job(2, finished="Complete")], "0-9", True, "adopt", 2, "0-9", id="same-try-finished-reported"
        ),
        pytest.param(
            [job(1, finished="Failed")], "0-9", True, "done", 2, "", id="everything-completed-before"
        ),
        pytest.param(
            [job(2, finished="Failed"), job(1, finished="Failed")],
            "",
            True,
            "adopt",
            2,
            "0-9",
            id="this-try-already-ran",
        ),  # fmt: skip
    ],
)
def test_plan(existing, completed, resume, action, generation, index_map):
    p = plan(existing, completed, resume)
    assert (p.action, p.generation, str(p.index_map)) == (action, generation, index_map)
    if action == "create":
        assert p.job_name == job_name(ID, generation)


def test_running_job_with_other_spec_is_stale_not_adopted():
    p = plan([job(1, spec="old")])
    assert p.action == "create"
    assert p.stale == (job_name(ID, 1),)


def test_generation_skips_a_name_already_used_with_another_spec():
    p = plan([job(2, spec="old", finished="Failed")])
    assert p.action == "create" and p.generation == 3
    assert p.job_name != job_name(ID, 2)


def test_is_ours_checks_labels_and_spec_hash():
    mine = job(2)
    labels = identity_labels(ID, 2)
    assert is_ours(mine, labels, "h1")
    assert not is_ours(mine, labels, "other")
    assert not is_ours(mine, {**labels, "kbatch.io/task-id": "x"}, "h1")


def test_completions_of_an_earlier_job_still_in_the_cluster_count_for_resume():
    # attempt 1 was killed after its Job finished but before the ledger heard of it
    p = plan([job(1, finished="Failed", completed="0-6")], completed="")
    assert p.action == "create" and str(p.index_map) == "7-9"


def test_completions_of_a_resumed_job_map_to_logical_indexes():
    earlier = job(1, finished="Failed", index_map="3,5,8", completed="0,2")  # local 0,2 = logical 3,8
    p = plan([earlier], completed="0-2,4,6-7,9")
    assert p.action == "create" and str(p.index_map) == "5"


def test_an_earlier_job_that_completed_everything_is_adopted_not_rerun():
    p = plan([job(1, finished="Complete", completed="0-9")], completed="")
    assert p.action == "adopt" and p.generation == 1


def test_no_resume_ignores_earlier_completions():
    p = plan([job(1, finished="Complete", completed="0-9")], completed="0-9", resume=False)
    assert p.action == "create" and str(p.index_map) == "0-9" and p.generation == 2
