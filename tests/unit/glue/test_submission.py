"""plan_submission: adopt, create, resume or do nothing -- decided from what exists (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from airflow_provider_kbatch.engine.submission import (
    GENERATION_ANNOTATION,
    SubmissionError,
    is_ours,
    ownership_problem,
    plan_submission,
    submit,
)
from airflow_provider_kbatch.errors import JobAlreadyExists
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import (
    ANNOTATION_INDEX_MAP,
    ANNOTATION_SPEC_HASH,
    JobIdentity,
    identity_annotations,
    identity_labels,
    job_name,
)
from airflow_provider_kbatch.spec.stage import StageSpec

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
                **identity_annotations(
                    JobIdentity(ID.dag_id, ID.task_id, ID.run_id, ID.map_index, generation)
                ),
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
    ("existing", "completed", "resume", "action", "generation", "index_map"),
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
        ),
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


def test_is_ours_checks_identity_labels_and_spec_hash():
    mine = job(2)
    labels = identity_labels(ID, 2)
    assert is_ours(mine, labels, "h1", identity=ID)
    assert is_ours(
        mine, labels, "h1", identity=JobIdentity(ID.dag_id, ID.task_id, ID.run_id, -1, 7)
    )  # any try
    assert not is_ours(mine, labels, "other", identity=ID)
    assert not is_ours(mine, {**labels, "kbatch.io/task-id": "x"}, "h1", identity=ID)
    other_run = JobIdentity(ID.dag_id, ID.task_id, "manual__other", try_number=2)
    assert not is_ours(mine, labels, "h1", identity=other_run)
    assert ownership_problem(mine, labels, "h1", identity=other_run) == (
        f"its annotations name another task instance: kbatch.io/run-id is {ID.run_id!r}, not 'manual__other'"
    )


def foreign(generation: int = 1, **annotations: str) -> dict[str, Any]:
    """Our name, our labels, our spec hash -- but the identity annotations of someone else."""
    theirs = job(generation)
    theirs["metadata"]["uid"] = "uid-theirs"
    theirs["metadata"]["annotations"].update(annotations)
    return theirs


@pytest.mark.parametrize(
    ("annotations", "differs"),
    [
        ({"kbatch.io/run-id": "manual__someone-else"}, "kbatch.io/run-id is 'manual__someone-else', not "),
        ({"kbatch.io/dag-id": "ETL"}, "kbatch.io/dag-id is 'ETL', not 'etl'"),
        ({"kbatch.io/task-id": "ingest2", "kbatch.io/map-index": "3"}, "kbatch.io/task-id is 'ingest2', not "
         "'ingest', kbatch.io/map-index is '3', not '-1'"),
        ({"kbatch.io/map-index": "not-a-number"}, "identity annotations (kbatch.io/dag-id, kbatch.io/task-id, "
         "kbatch.io/run-id, kbatch.io/map-index) are missing or malformed"),
    ],
)  # fmt: skip
def test_a_job_found_by_selector_that_names_another_task_instance_is_not_adopted(annotations, differs):
    theirs = foreign(1, **annotations)
    assert theirs["metadata"]["labels"] == identity_labels(ID, 1)  # the selector found it
    with pytest.raises(SubmissionError) as err:
        plan([theirs])
    message = str(err.value)
    assert SubmissionError.final is True
    assert f"job {job_name(ID, 1)} exists" in message and differs in message
    assert "was not adopted" in message and f"kubectl delete job {job_name(ID, 1)}" in message
    # running or finished, same spec or not: never adopted, never counted for resume
    for finished in (None, "Complete", "Failed"):
        running = foreign(1, **annotations)
        running["status"]["conditions"] = [{"type": finished, "status": "True"}] if finished else []
        with pytest.raises(SubmissionError):
            plan([job(2, finished="Failed"), running])


def test_a_job_without_identity_annotations_is_not_adopted():
    bare = job(1)
    for key in ("kbatch.io/dag-id", "kbatch.io/task-id", "kbatch.io/run-id", "kbatch.io/map-index"):
        del bare["metadata"]["annotations"][key]
    with pytest.raises(SubmissionError, match="are missing or malformed"):
        plan([bare])


class CreateHook:
    """create_job answers 409 with ``existing`` read back, as hooks.calls.create_job does."""

    def __init__(self, existing: dict[str, Any] | None) -> None:
        self.existing = existing
        self.created: list[dict[str, Any]] = []

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        if self.existing is not None:
            raise JobAlreadyExists(self.existing)
        self.created.append(manifest)
        return {**manifest, "metadata": {**manifest["metadata"], "uid": "uid-new"}}


def _manifest() -> tuple[dict[str, Any], str]:
    stage = StageSpec(image="python:3.12-slim", command=("python", "-c", "print(1)"), completions=3)
    return build_job_manifest(stage, ID, generation=2, namespace="ns"), spec_hash(stage)


def _as_read_back(manifest: dict[str, Any], uid: str) -> dict[str, Any]:
    read = copy.deepcopy(manifest)
    read["metadata"].update(uid=uid, resourceVersion="42", creationTimestamp="2026-01-01T00:00:00Z")
    read["status"] = {"active": 3, "ready": 0}
    return read


def test_a_409_read_back_is_adopted_only_when_the_whole_identity_matches():
    manifest, digest = _manifest()
    ours = _as_read_back(manifest, "uid-ours")
    ours["metadata"]["annotations"]["kbatch.io/try-number"] = "1"  # created by the previous try
    job_read, created = submit(CreateHook(ours), "ns", manifest, digest)
    assert (job_read["metadata"]["uid"], created) == ("uid-ours", False)

    theirs = _as_read_back(manifest, "uid-theirs")
    theirs["metadata"]["annotations"]["kbatch.io/run-id"] = "scheduled__2026-02-01T00:00:00+00:00"
    assert theirs["metadata"]["labels"] == manifest["metadata"]["labels"]  # labels and name: ours
    with pytest.raises(SubmissionError) as err:
        submit(CreateHook(theirs), "ns", manifest, digest)
    message = str(err.value)
    name = manifest["metadata"]["name"]
    assert f"job ns/{name} exists (the create returned 409)" in message
    assert "was not created for this task instance and spec" in message
    assert "kbatch.io/run-id is 'scheduled__2026-02-01T00:00:00+00:00', not " in message
    assert f"kubectl delete job {name} -n ns" in message and "was not adopted" in message


def test_a_409_read_back_of_another_spec_names_the_spec_hash():
    manifest, digest = _manifest()
    other = _as_read_back(manifest, "uid-2")
    other["metadata"]["annotations"][ANNOTATION_SPEC_HASH] = "0" * 64
    with pytest.raises(SubmissionError, match=r"kbatch.io/spec-hash is '0000.*another spec"):
        submit(CreateHook(other), "ns", manifest, digest)
    hook = CreateHook(None)
    assert submit(hook, "ns", manifest, digest)[1] is True and hook.created == [manifest]


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
