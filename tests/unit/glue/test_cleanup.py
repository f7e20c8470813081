"""engine.cleanup.free_workspace (the cleanup operator's work) and
engine.submission.remove_superseded, driven through a real ``KbatchHook`` whose executor is the
in-memory API server of tests/unit/hooks/fakes.py, extended with what the garbage collector and
the pvc-protection controller do: a deleted Job takes its pods along, and a deleted claim stays
``Terminating`` while a pod mounts it. The fake ignores label selectors (it answers every object
of the kind), so what is asserted is that the code checks ownership itself."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kubernetes import client

from airflow_provider_kbatch.engine import cleanup, ledger, storage
from airflow_provider_kbatch.engine.submission import GENERATION_ANNOTATION, remove_superseded
from airflow_provider_kbatch.hooks.kbatch import KbatchHook
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec
from tests.unit.hooks.fakes import FakeApi, Sleeps, to_dict

NS = "batch"
RUN = "scheduled__2026-01-01T00:00:00+00:00"
LOG = logging.getLogger("test")
WS = ws.Workspace(create=True, size="1Gi")
TERMINATING = "2026-01-01T00:00:00Z"


class ClusterApi(FakeApi):
    """FakeApi plus the garbage collector (a deleted Job's pods go with it) and the
    pvc-protection finalizer (a deleted claim stays Terminating while a pod mounts it)."""

    def _delete(self, kind: str, ns: str, kw: dict[str, Any]) -> dict[str, Any]:
        obj = self._existing(kind, ns, kw["name"])
        if kind == "PersistentVolumeClaim" and self.mounted(ns, kw["name"]):
            obj["metadata"]["deletionTimestamp"] = TERMINATING
            return to_dict_status()
        result = super()._delete(kind, ns, kw)
        if kind == "Job":
            uid = obj["metadata"]["uid"]
            for key, pod in list(self.objects.items()):
                if key[0] == "Pod" and any(
                    r["uid"] == uid for r in pod["metadata"].get("ownerReferences", [])
                ):
                    del self.objects[key]
        self.finalize(ns)
        return result

    def mounted(self, ns: str, claim: str) -> bool:
        return any(
            k == "Pod" and n == ns and cleanup.mounts_claim(o.get("spec"), claim)
            for (k, n, _), o in self.objects.items()
        )

    def finalize(self, ns: str) -> None:
        for key, obj in list(self.objects.items()):
            terminating = key[0] == "PersistentVolumeClaim" and obj["metadata"].get("deletionTimestamp")
            if terminating and not self.mounted(ns, key[2]):
                del self.objects[key]

    def remove_pod(self, ns: str, name: str) -> None:
        del self.objects[("Pod", ns, name)]
        self.finalize(ns)

    def names(self, kind: str) -> list[str]:
        return sorted(n for (k, _, n) in self.objects if k == kind)

    def verbs(self) -> list[tuple[str, str]]:
        return [(c.verb, c.kwargs.get("name", "")) for c in self.calls if c.verb in ("DELETE",)]


def to_dict_status() -> dict[str, Any]:
    return to_dict(client.V1Status(status="Success"))


class Clock:
    """The injected clock, moved by the injected sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Any]] = []

    def __call__(self) -> float:
        return self.now

    def at(self, when: float, action: Any) -> None:
        self.timers.append((when, action))

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for timer in [t for t in self.timers if t[0] <= self.now]:
            self.timers.remove(timer)
            timer[1]()


def cluster() -> tuple[KbatchHook, ClusterApi]:
    api = ClusterApi()
    hook = KbatchHook("kubernetes_default", namespace=NS, sleep=Sleeps())
    hook.execute = api  # type: ignore[method-assign]  # the real procedures, the in-memory server
    return hook, api


def ident(task: str, run_id: str = RUN, try_number: int = 1, dag_id: str = "etl") -> JobIdentity:
    return JobIdentity(dag_id=dag_id, task_id=task, run_id=run_id, try_number=try_number)


SPEC = StageSpec(image="img", command=("python", "-c", "pass"), completions=3)


def with_claim(hook: KbatchHook, identity: JobIdentity) -> StageSpec:
    """What the operator does first: the run's claim, recorded; the spec wired to it."""
    return storage.prepare_stage(
        hook,
        NS,
        identity,
        workspace=WS,
        ports=ws.Ports.build(output="out"),
        spec=SPEC,
        declared={},
        logical_date=None,
        log=LOG,
    ).spec


def put_job(
    api: ClusterApi,
    identity: JobIdentity,
    spec: StageSpec,
    *,
    generation: int = 1,
    state: str = "Complete",
    index_map: str | None = None,
    completed: str = "0-2",
    failed: str = "",
    pods: int = 3,
) -> dict[str, Any]:
    """A Job as the provider creates it, with the status the Job controller gives it, and its pods."""
    manifest = build_job_manifest(
        spec,
        identity,
        generation=generation,
        namespace=NS,
        index_map=IndexSet.parse(index_map) if index_map else None,
        extra_annotations={GENERATION_ANNOTATION: str(generation)},
    )
    conditions = [] if state == "Running" else [{"type": state, "status": "True", "reason": f"{state}Reason"}]
    status = {"conditions": conditions, "completedIndexes": completed, "failedIndexes": failed}
    job = api.put("Job", NS, {**manifest, "status": status})
    template = manifest["spec"]["template"]
    for i in range(pods):
        api.put(
            "Pod",
            NS,
            {
                "metadata": {
                    "name": f"{manifest['metadata']['name']}-{i}",
                    "labels": dict(template["metadata"]["labels"]),
                    "ownerReferences": [
                        {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                         "uid": job["metadata"]["uid"], "controller": True}
                    ],
                },
                "spec": template["spec"],
                "status": {"phase": "Running" if state == "Running" else "Succeeded"},
            },
        )  # fmt: skip
    return job


# --------------------------------------------------------------------------- free_workspace


def test_deleting_only_the_claim_leaves_it_terminating() -> None:
    """The reported symptom: the claim deleted, but held by the completed pods of the run."""
    hook, api = cluster()
    spec = with_claim(hook, ident("ingest"))
    put_job(api, ident("ingest"), spec)
    claim = storage.delete_workspace(hook, NS, ident("cleanup"), WS, LOG)
    assert claim is not None
    assert hook.get_pvc(NS, claim)["metadata"]["deletionTimestamp"] == TERMINATING


def test_cleanup_deletes_the_runs_finished_jobs_then_the_claim_and_waits_until_it_is_gone() -> None:
    hook, api = cluster()
    spec = with_claim(hook, ident("ingest"))
    claim = ws.claim_name("etl", RUN, 1)
    ingest = put_job(api, ident("ingest"), spec)
    transform = put_job(
        api, ident("transform"), spec, generation=2, state="Failed", completed="0-1", failed="2"
    )
    # not this run's: another run of the DAG, another DAG with the same run id, copied labels
    other_run = put_job(api, ident("ingest", run_id="scheduled__2026-01-02T00:00:00+00:00"), SPEC)
    other_dag = put_job(api, ident("ingest", dag_id="other"), SPEC, state="Running")
    copied = put_job(api, ident("copy", run_id="manual__x"), SPEC)
    copied["metadata"]["labels"] = dict(ingest["metadata"]["labels"])
    api.put("Job", NS, copied)
    clock = Clock()

    report = cleanup.free_workspace(hook, NS, ident("cleanup"), WS, LOG, sleep=clock.sleep, clock=clock)

    mine = sorted([ingest["metadata"]["name"], transform["metadata"]["name"]])
    assert report.claim == claim and sorted(report.jobs) == mine and report.pods == 6
    assert hook.get_pvc(NS, claim) is None, "gone, not Terminating"
    assert report.seconds == 0.0, "the pods went with their Jobs: gone at the first look"
    assert sorted(api.names("Job")) == sorted(
        j["metadata"]["name"] for j in (other_run, other_dag, copied)
    ), "only this run's Jobs were deleted"
    deletes = api.verbs()
    assert deletes[-1] == ("DELETE", claim) and sorted(n for _, n in deletes[:-1]) == mine, "Jobs first"
    assert all(
        c.kwargs.get("propagation_policy") == "Foreground"
        for c in api.calls
        if c.method == "delete_namespaced_job"
    )
    record = ws.read_workspace(storage.read_ledger(hook, NS, "etl", RUN))
    assert record is not None and record.state == "deleted"
    # once more: nothing left to do, nothing else deleted
    again = cleanup.free_workspace(hook, NS, ident("cleanup"), WS, LOG, sleep=clock.sleep, clock=clock)
    assert again == cleanup.CleanupReport(None)


def test_a_running_job_of_the_run_that_mounts_the_claim_stops_the_cleanup_before_any_deletion() -> None:
    hook, api = cluster()
    spec = with_claim(hook, ident("ingest"))
    put_job(api, ident("ingest"), spec)
    running = put_job(api, ident("late"), spec, state="Running")
    with pytest.raises(cleanup.ClaimInUse, match=f"{running['metadata']['name']} of run .* still running"):
        cleanup.free_workspace(hook, NS, ident("cleanup"), WS, LOG)
    assert api.verbs() == [] and len(api.names("Job")) == 2
    assert ws.read_workspace(storage.read_ledger(hook, NS, "etl", RUN)).state == "active"


def test_a_running_job_that_does_not_mount_the_claim_is_left_alone() -> None:
    hook, api = cluster()
    spec = with_claim(hook, ident("ingest"))
    put_job(api, ident("ingest"), spec)
    other = put_job(api, ident("sidecar-job"), SPEC, state="Running")  # no workspace
    report = cleanup.free_workspace(hook, NS, ident("cleanup"), WS, LOG)
    assert report.kept == (other["metadata"]["name"],) and api.names("Job") == [other["metadata"]["name"]]
    assert report.claim is not None and hook.get_pvc(NS, report.claim) is None


def test_a_claim_that_does_not_go_fails_retryably_naming_its_pods_and_a_retry_finishes() -> None:
    hook, api = cluster()
    spec = with_claim(hook, ident("ingest"))
    claim = ws.claim_name("etl", RUN, 1)
    job = put_job(api, ident("ingest"), spec, pods=1)
    stray = api.objects[("Pod", NS, f"{job['metadata']['name']}-0")] | {}
    stray = {**stray, "metadata": {**stray["metadata"], "name": "debug-shell", "ownerReferences": []}}
    api.put("Pod", NS, stray)  # someone's pod that mounts the claim; not ours to delete
    clock = Clock()
    with pytest.raises(cleanup.ClaimInUse, match=r"still there .* 10s after .* still mount it: debug-shell"):
        cleanup.free_workspace(
            hook, NS, ident("cleanup"), WS, LOG, wait_seconds=10, sleep=clock.sleep, clock=clock
        )
    assert 10 <= clock.now <= 12, "bounded"
    polls = [c for c in api.calls if c.method == "read_namespaced_persistent_volume_claim"]
    assert len(polls) < 15, "a short backoff, not a busy loop"
    assert hook.get_pvc(NS, claim)["metadata"]["deletionTimestamp"] == TERMINATING
    assert ws.read_workspace(storage.read_ledger(hook, NS, "etl", RUN)).state == "deleted"

    # the retry: the claim is still Terminating; the stray pod goes 3 s into the wait
    clock.at(clock.now + 3, lambda: api.remove_pod(NS, "debug-shell"))
    report = cleanup.free_workspace(hook, NS, ident("cleanup"), WS, LOG, sleep=clock.sleep, clock=clock)
    assert report.claim == claim and hook.get_pvc(NS, claim) is None and 3 <= report.seconds <= 5


def test_the_cleanup_operator_frees_the_runs_storage() -> None:
    from airflow_provider_kbatch.operators.workspace import KbatchWorkspaceCleanupOperator

    hook, api = cluster()
    spec = with_claim(hook, ident("ingest"))
    put_job(api, ident("ingest"), spec)
    op = KbatchWorkspaceCleanupOperator(task_id="cleanup", workspace=WS, namespace=NS, check_run=False)
    op.__dict__["hook"] = hook

    class TI:
        dag_id, task_id, run_id = "etl", "cleanup", RUN

    assert op.execute({"ti": TI()}) == ws.claim_name("etl", RUN, 1)  # type: ignore[arg-type]
    assert api.names("Job") == [] and api.names("Pod") == [] and api.names("PersistentVolumeClaim") == []


# --------------------------------------------------------------------------- remove_superseded


def resumed_stage(hook: KbatchHook, api: ClusterApi) -> tuple[dict[str, Any], dict[str, Any]]:
    """Try 1 ran 0-5 and failed index 5 (``Failed 5/6``); try 2 resumed index 5 and completed
    (``Complete 1/1``); both recorded in the ledger as the operator records them."""
    spec = StageSpec(image="img", completions=6)
    digest = spec_hash(spec)
    first = put_job(
        api, ident("ingest"), spec, generation=1, state="Failed", completed="0-4", failed="5", pods=6
    )
    second = put_job(
        api, ident("ingest", try_number=2), spec, generation=2, index_map="5", completed="0", pods=1
    )
    for try_number, job, index_map, done, bad, ok in (
        (1, first, "0-5", "0-4", "5", False),
        (2, second, "5", "5", "", True),
    ):
        identity = ident("ingest", try_number=try_number)
        meta = job["metadata"]
        ledger.attempt_started(hook, NS, identity, job=meta["name"], uid=meta["uid"], spec_hash=digest,
                               index_map=IndexSet.parse(index_map))  # fmt: skip
        ledger.attempt_finished(hook, NS, identity, job=meta["name"], uid=meta["uid"], succeeded=ok,
                                completed=IndexSet.parse(done), failed=IndexSet.parse(bad), reason=None,
                                results={})  # fmt: skip
    return first, second


def test_a_successful_resume_removes_the_failed_attempts_job_and_its_pods() -> None:
    hook, api = cluster()
    first, second = resumed_stage(hook, api)
    removed = remove_superseded(hook, NS, ident("ingest", try_number=2), second, log=LOG)
    assert removed == [first["metadata"]["name"]]
    assert api.names("Job") == [second["metadata"]["name"]]
    assert api.names("Pod") == [f"{second['metadata']['name']}-0"]
    (delete,) = [c for c in api.calls if c.method == "delete_namespaced_job"]
    assert delete.kwargs["propagation_policy"] == "Foreground"
    record = ledger.read_stage(hook, NS, ident("ingest"))
    assert record is not None and [a.job for a in record.attempts] == [first["metadata"]["name"],
                                                                       second["metadata"]["name"]]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("end-not-recorded", "the run ledger has no record of its end"),
        ("indexes-not-recorded", "the run ledger lacks indexes it completed"),
        ("running", "it has not finished"),
        ("other-task", None),  # another task instance's: not even considered
        ("not-succeeded", None),
    ],
)
def test_a_superseded_job_is_kept_unless_the_ledger_holds_what_it_did(
    case: str, why: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    hook, api = cluster()
    first, second = resumed_stage(hook, api)
    key, name = rules.stage_key("ingest"), rules.ledger_name("etl", RUN)
    if case == "end-not-recorded":
        hook.update_config_map_cas(NS, name, lambda d: _edit_attempt(d, key, 0, ended=None))
    elif case == "indexes-not-recorded":
        hook.update_config_map_cas(NS, name, lambda d: _edit_stage(d, key, completed="5"))
    elif case == "running":
        api.objects[("Job", NS, first["metadata"]["name"])]["status"]["conditions"] = []
    elif case == "other-task":
        annotations = api.objects[("Job", NS, first["metadata"]["name"])]["metadata"]["annotations"]
        annotations["kbatch.io/task-id"] = "another"
    elif case == "not-succeeded":
        second = {**second, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    with caplog.at_level(logging.INFO, logger="test"):
        assert remove_superseded(hook, NS, ident("ingest", try_number=2), second, log=LOG) == []
    assert len(api.names("Job")) == 2 and not [c for c in api.calls if c.verb == "DELETE"]
    kept = [r.getMessage() for r in caplog.records if "kept:" in r.getMessage()]
    assert kept == (
        [f"job {NS}/{first['metadata']['name']} of an earlier attempt kept: {why}"] if why else []
    )


def _edit_attempt(data: dict[str, str], key: str, n: int, **changes: Any) -> dict[str, str]:
    import json

    raw = json.loads(data[key])
    raw["attempts"][n].update(changes)
    return {**data, key: json.dumps(raw)}


def _edit_stage(data: dict[str, str], key: str, **changes: Any) -> dict[str, str]:
    import json

    raw = json.loads(data[key])
    raw.update(changes)
    return {**data, key: json.dumps(raw)}
