"""The run ledger, per-index results and adoption against the local control plane.

* 40 stages with large per-index results keep the ledger ConfigMap under the API server's 1 MiB
  object limit; every write succeeds and the newest records are intact (without the budget the
  same data is refused with a 422 -- shown here too).
* A 1,000-index Indexed Job whose pods (on the simulated node) each leave a ~2 kB result in
  their termination message: the XCom carries the lowest indexes within its 48 KiB budget, and ``read_results`` returns every
  one from the results ConfigMaps, which the garbage collector deletes with the ledger.
* A Job with our name and labels but another task instance's identity annotations is never
  adopted, on the plan path (found by selector) or the 409 read-back path.
* A ConfigMap under the run's ledger name that belongs to another run is neither read nor written.
* The shipped Role covers writing and reading results (run as its ServiceAccount).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from typing import Any

import pytest

from airflow_provider_kbatch.devcluster.processnode.simulated import pod_request
from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.engine import results as stored_results
from airflow_provider_kbatch.engine.outcome import finish_stage
from airflow_provider_kbatch.engine.results import read_results
from airflow_provider_kbatch.engine.submission import SubmissionError, plan_submission, submit
from airflow_provider_kbatch.engine.waiter import WaitSettings, wait_for_job
from airflow_provider_kbatch.errors import KbatchApiError
from airflow_provider_kbatch.hooks.kbatch import AsyncKbatchHook, KbatchHook
from airflow_provider_kbatch.pipeline import records
from airflow_provider_kbatch.pipeline import results as result_rules
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity, selector_for
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.status import job_outcome
from tests.conftest import ClusterHandle, wait_until
from tests.integration.test_rbac import ServiceAccountAccess, sa_access  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration
LOG = logging.getLogger(__name__)
OBJECT_LIMIT = 1024 * 1024
BIG = {i: {"index": i, "blob": "x" * 440} for i in range(records.MAX_RESULTS)}  # ~500 B each


@pytest.fixture
def hook(devcluster: ClusterHandle) -> KbatchHook:
    return KbatchHook()


def stored_bytes(config_map: Any) -> int:
    """What the API server counts against a ConfigMap's 1 MiB: its data (keys and values)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in (config_map.data or {}).items())


def object_bytes(devcluster: ClusterHandle, config_map: Any) -> int:
    return len(json.dumps(devcluster.api().sanitize_for_serialization(config_map)).encode())


# --------------------------------------------------------------------------- ledger size


def test_a_40_stage_run_with_large_results_keeps_its_ledger_under_1_mib(
    hook: KbatchHook, devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    run_id = "manual__40-stages"
    started = time.monotonic()
    for s in range(40):
        identity = JobIdentity(dag_id="wide", task_id=f"stage_{s:02d}", run_id=run_id)
        job = f"kb-wide-stage-{s:02d}-g1"
        ledger.attempt_started(
            hook, namespace, identity, job=job, uid=f"uid-{s}", spec_hash="h", index_map=IndexSet.full(100)
        )
        record = ledger.attempt_finished(
            hook, namespace, identity, job=job, uid=f"uid-{s}", succeeded=True,
            completed=IndexSet.full(100), failed=IndexSet(), reason=None, results=BIG,
        )  # fmt: skip
        assert record is not None and record.state == "succeeded"  # every write succeeded
    seconds = time.monotonic() - started
    name = records.ledger_name("wide", run_id)
    config_map = devcluster.core().read_namespaced_config_map(name, namespace)
    size, whole = stored_bytes(config_map), object_bytes(devcluster, config_map)
    assert size <= records.LEDGER_BUDGET_BYTES and whole < OBJECT_LIMIT
    assert config_map.metadata.annotations == records.ledger_annotations("wide", run_id)
    data = dict(config_map.data)
    recs = [records.read_stage(data, records.stage_key(f"stage_{s:02d}")) for s in range(40)]
    for rec in recs:
        assert rec is not None and rec.state == "succeeded" and rec.completed == IndexSet.full(100)
        assert rec.latest_attempt is not None and rec.latest_attempt.index_map == IndexSet.full(100)
    intact = [s for s, rec in enumerate(recs) if rec.results == BIG and len(rec.transitions) == 2]  # type: ignore[union-attr]
    assert intact == list(range(intact[0], 40)) and len(intact) >= 10, intact  # the newest records
    record_property("ledger_40_stages_data_bytes", size)
    record_property("ledger_40_stages_object_bytes", whole)
    record_property("ledger_40_stages_intact_records", len(intact))
    record_property("ledger_40_stages_writes_s", round(seconds, 2))
    # the same records without the budget: the API server refuses the write (what used to happen)
    unbounded = dict(data)
    for s in range(40):
        key = records.stage_key(f"stage_{s:02d}")
        raw = json.loads(unbounded[key])
        raw["results"] = {str(i): v for i, v in BIG.items()}
        unbounded[key] = json.dumps(raw)
    assert records.ledger_size(unbounded) > OBJECT_LIMIT
    with pytest.raises(KbatchApiError) as refused:
        hook.update_config_map_cas(namespace, name, lambda _: unbounded)
    assert refused.value.status in (413, 422), refused.value
    record_property("ledger_40_stages_unbounded_bytes", records.ledger_size(unbounded))


def test_a_ledger_of_another_run_under_our_name_is_neither_read_nor_written(
    hook: KbatchHook, devcluster: ClusterHandle, namespace: str
) -> None:
    identity = JobIdentity(dag_id="etl", task_id="ingest", run_id="manual__mine")
    name = records.ledger_name(identity.dag_id, identity.run_id)
    body = records.ledger_config_map("etl", "manual__someone-else")
    body["metadata"]["name"] = name  # as if both runs hashed to one name
    body["data"] = {"stage.x": "{}"}
    before = devcluster.core().create_namespaced_config_map(namespace, body)
    with pytest.raises(records.LedgerIdentityError, match="belongs to DAG 'etl' run 'manual__someone-else'"):
        ledger.attempt_started(
            hook, namespace, identity, job="kb-x-g1", uid="u", spec_hash="h", index_map=IndexSet.full(1)
        )
    with pytest.raises(records.LedgerIdentityError):
        ledger.completed_for_resume(hook, namespace, identity, "h")
    after = devcluster.core().read_namespaced_config_map(name, namespace)
    assert after.metadata.resource_version == before.metadata.resource_version and after.data == {
        "stage.x": "{}"
    }
    # a ledger created by the provider carries the identity
    other = JobIdentity(dag_id="etl", task_id="ingest", run_id="manual__fresh")
    ledger.attempt_started(
        hook, namespace, other, job="kb-y-g1", uid="u", spec_hash="h", index_map=IndexSet.full(1)
    )
    created = devcluster.core().read_namespaced_config_map(
        records.ledger_name("etl", "manual__fresh"), namespace
    )
    assert created.metadata.annotations == records.ledger_annotations("etl", "manual__fresh")


# --------------------------------------------------------------------------- 1,000 results of 2 kB

# Each index's 2 KB result is its pod's termination message, written by the simulated node (the
# path from a real container's termination log is the process node's, tested there): 1,000 pods
# cost the control plane only, not 1,000 processes.
RESULT = '{"index":{index},"tag":"r{index}","pad":"' + "x" * 1960 + '"}'


def expected(index: int) -> dict[str, Any]:
    return {"index": index, "tag": f"r{index}", "pad": "x" * 1960}


def start_simulated_stage(
    hook: KbatchHook,
    namespace: str,
    identity: JobIdentity,
    *,
    completions: int,
    parallelism: int,
    seconds: float,
) -> dict[str, Any]:
    """Submit a stage of ``completions`` simulated pods, each ending after ``seconds`` with
    ``RESULT`` as its termination message, and record its attempt in the ledger."""
    request = pod_request({"seconds": seconds, "exitCode": 0, "message": RESULT})
    spec = StageSpec(
        image="simulated", command=("true",), completions=completions, parallelism=parallelism,
        node_selector=request["node_selector"], tolerations=tuple(request["tolerations"]),
        annotations=request["annotations"], ttl_seconds_after_finished=3600,
    )  # fmt: skip
    digest = spec_hash(spec)
    manifest = build_job_manifest(spec, identity, generation=1, namespace=namespace)
    job, created = submit(hook, namespace, manifest, digest)
    assert created
    ledger.attempt_started(
        hook, namespace, identity, job=job["metadata"]["name"], uid=job["metadata"]["uid"],
        spec_hash=digest, index_map=IndexSet.full(completions),
    )  # fmt: skip
    return job


def test_1000_indexes_of_2kb_results_every_one_readable(
    hook: KbatchHook, devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    identity = JobIdentity(dag_id="fanout", task_id="crunch", run_id="manual__1000", try_number=1)
    job = start_simulated_stage(hook, namespace, identity, completions=1000, parallelism=1000, seconds=0)
    started = time.monotonic()
    done = wait_until(
        lambda: (j := hook.get_job(namespace, job["metadata"]["name"])) and job_outcome(j).finished and j,
        timeout=900, interval=2, what="the 1,000-index Job finished",
    )  # fmt: skip
    record_property("job_1000_indexes_s", round(time.monotonic() - started, 1))
    assert job_outcome(done).succeeded, done["status"]

    started = time.monotonic()
    result, failure = finish_stage(hook, namespace, identity, done, completions=1000, log=LOG)
    finish_seconds = time.monotonic() - started
    assert failure is None and result["completed_indexes"] == "0-999"
    inline = result["results"]
    inline_bytes = len(json.dumps(inline, separators=(",", ":")).encode())
    assert inline_bytes <= result_rules.INLINE_BUDGET_BYTES
    assert result["results_total"] == 1000 and result["results_inline"] == len(inline) >= 20
    assert inline == {str(i): expected(i) for i in range(len(inline))}

    started = time.monotonic()
    every = read_results(hook, **result["results_ref"])
    read_seconds = time.monotonic() - started
    assert every == {i: expected(i) for i in range(1000)}

    selector = result_rules.results_selector("fanout", "manual__1000", "crunch")
    kept = devcluster.core().list_namespaced_config_map(namespace, label_selector=selector).items
    sizes = [stored_bytes(c) for c in kept]
    assert all(object_bytes(devcluster, c) < 900 * 1024 for c in kept), sizes
    ledger_cm = devcluster.core().read_namespaced_config_map(
        records.ledger_name("fanout", "manual__1000"), namespace
    )
    assert stored_bytes(ledger_cm) < records.RECORD_BUDGET_BYTES  # the results are not in the ledger
    for config_map in kept:
        (owner,) = config_map.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == (
            "ConfigMap",
            ledger_cm.metadata.name,
            ledger_cm.metadata.uid,
        )
    record_property("results_1000x2kb_configmaps", len(kept))
    record_property("results_1000x2kb_stored_bytes", sum(sizes))
    record_property("results_1000x2kb_inline", len(inline))
    record_property("results_1000x2kb_inline_bytes", inline_bytes)
    record_property("results_1000x2kb_finish_stage_s", round(finish_seconds, 2))
    record_property("results_1000x2kb_read_results_s", round(read_seconds, 2))

    # finishing again (a retried execute_complete) writes nothing new; the results go with the ledger
    versions = {c.metadata.name: c.metadata.resource_version for c in kept}
    again, _ = finish_stage(hook, namespace, identity, done, completions=1000, log=LOG)
    assert again["results"] == inline
    now = devcluster.core().list_namespaced_config_map(namespace, label_selector=selector).items
    assert {c.metadata.name: c.metadata.resource_version for c in now} == versions
    devcluster.core().delete_namespaced_config_map(ledger_cm.metadata.name, namespace)
    wait_until(
        lambda: not devcluster.core().list_namespaced_config_map(namespace, label_selector=selector).items,
        timeout=120, what="results ConfigMaps garbage-collected with the ledger",
    )  # fmt: skip
    hook.delete_job(namespace, done["metadata"]["name"], propagation="Background")


def test_the_shipped_role_covers_writing_and_reading_results(sa_access: ServiceAccountAccess) -> None:  # noqa: F811
    hook, ns = sa_access.hook(), sa_access.namespace
    identity = JobIdentity(dag_id="rbac", task_id="results", run_id="manual__rbac")
    ledger.attempt_started(hook, ns, identity, job="kb-rbac-g1", uid="uid-rbac", spec_hash="h",
                           index_map=IndexSet.full(600))  # fmt: skip
    job = {"metadata": {"name": "kb-rbac-g1", "uid": "uid-rbac", "annotations": {"kbatch.io/spec-hash": "h"}}}
    results = {i: expected(i) for i in range(600)}  # two ConfigMaps
    written = stored_results.store(hook, ns, identity, job, results, generation=1)
    assert len(written) == 2
    assert stored_results.store(
        hook, ns, identity, job, {**results, 600: expected(600)}, generation=1
    )  # update
    assert read_results(hook, ns, "rbac", "manual__rbac", "results") == {i: expected(i) for i in range(601)}


# --------------------------------------------------------------------------- adoption checks the identity


def test_a_job_with_our_name_and_labels_but_another_identity_is_not_adopted(
    hook: KbatchHook, devcluster: ClusterHandle, namespace: str
) -> None:
    identity = JobIdentity(dag_id="etl", task_id="ingest", run_id="manual__2026-01-01", try_number=1)
    spec = StageSpec(image="busybox", command=("sh", "-c", "true"), completions=2)
    digest = spec_hash(spec)
    manifest = build_job_manifest(spec, identity, generation=1, namespace=namespace)
    theirs = json.loads(json.dumps(manifest))
    theirs["metadata"]["annotations"]["kbatch.io/run-id"] = "manual__someone-else"
    theirs["spec"]["suspend"] = True  # it need not run
    foreign = devcluster.batch().create_namespaced_job(namespace, theirs)
    name = manifest["metadata"]["name"]

    # the plan path: found by our selector (labels are ours), refused by its annotations
    existing = hook.list_jobs(namespace, selector_for(identity))
    assert [j["metadata"]["name"] for j in existing] == [name]
    with pytest.raises(SubmissionError) as planned:
        plan_submission(identity=identity, spec_hash=digest, completions=2, existing_jobs=existing,
                        completed=IndexSet(), resume=True)  # fmt: skip
    assert "kbatch.io/run-id is 'manual__someone-else', not 'manual__2026-01-01'" in str(planned.value)
    assert f"kubectl delete job {name}" in str(planned.value) and SubmissionError.final

    # the 409 read-back path: the create collides with it
    with pytest.raises(SubmissionError) as collided:
        submit(hook, namespace, manifest, digest)
    message = str(collided.value)
    assert f"job {namespace}/{name} exists (the create returned 409)" in message
    assert "was not created for this task instance and spec" in message and "was not adopted" in message
    assert f"kubectl delete job {name} -n {namespace}" in message
    still = devcluster.batch().read_namespaced_job(name, namespace)
    assert still.metadata.uid == foreign.metadata.uid and still.spec.suspend is True  # left alone

    # once the foreign Job is deleted (the fix the message names), the same submission works
    hook.delete_job(namespace, name, propagation="Background")
    wait_until(lambda: hook.get_job(namespace, name) is None, timeout=60, what="foreign job deleted")
    job, created = submit(hook, namespace, manifest, digest)
    assert created and job["metadata"]["annotations"]["kbatch.io/run-id"] == "manual__2026-01-01"
    hook.delete_job(namespace, name, propagation="Background")


def test_results_of_pods_deleted_while_the_job_runs_are_kept_by_the_wait(
    hook: KbatchHook, devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    """The pod garbage collector deletes terminated pods beyond its threshold (12,500 by default)
    also while their Job runs, and a result lives only in its pod. Here a thread deletes every
    Succeeded pod as soon as it sees it, as the collector does, and the wait is stopped halfway
    and started again, as a triggerer restart does. The first wait stored what it rescued with its
    progress lines, so its cancellation loses none of it; the second keeps the rest; the outcome
    read afterwards returns every index's result but those deleted while no wait ran."""
    completions = 24
    identity = JobIdentity(dag_id="gc", task_id="crunch", run_id="manual__gc", try_number=1)
    job = start_simulated_stage(
        hook, namespace, identity, completions=completions, parallelism=2, seconds=0.5
    )
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]

    deleted: set[int] = set()
    stop = threading.Event()

    def collect() -> None:  # the pod garbage collector, impatient
        core = devcluster.core()
        while not stop.is_set():
            for pod in core.list_namespaced_pod(namespace, label_selector=f"controller-uid={uid}").items:
                if pod.status.phase == "Succeeded" and pod.metadata.deletion_timestamp is None:
                    with contextlib.suppress(Exception):
                        core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
                        deleted.add(int(pod.metadata.annotations["batch.kubernetes.io/job-completion-index"]))
            stop.wait(0.2)

    def kept() -> set[int]:
        attempt = stored_results.of_attempt(hook, namespace, identity, job)
        return set(attempt.results) if attempt is not None else set()

    def waiting() -> Any:
        return wait_for_job(
            AsyncKbatchHook(), namespace, name, index_map=IndexSet.full(completions),
            settings=WaitSettings(stream_logs=False, progress_interval=0.5), log=LOG,
            keep=stored_results.keeper(hook, namespace, LOG),
        )  # fmt: skip

    async def restarted() -> tuple[set[int], Any]:
        first = asyncio.create_task(waiting())
        deadline = time.monotonic() + 120
        while not (before := await asyncio.to_thread(kept)) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        first.cancel()  # the triggerer restarts
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await asyncio.sleep(1.0)
        return before, await waiting()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    try:
        before, waited = asyncio.run(restarted())
    finally:
        stop.set()
        collector.join(timeout=30)
    assert waited.status == "finished" and waited.outcome is not None and waited.outcome.succeeded
    assert before and before <= deleted, (before, deleted)  # stored while the Job ran
    assert len(deleted) >= completions // 2, deleted  # most results now exist only as stored
    assert waited.rescued == {} and waited.rescued_kept >= 1
    record_property("gc_deleted_pods", len(deleted))
    record_property("gc_kept_by_the_first_wait", len(before))
    record_property("gc_kept_by_the_second_wait", waited.rescued_kept)

    done = hook.get_job(namespace, name)
    left = {
        int(p.metadata.annotations["batch.kubernetes.io/job-completion-index"])
        for p in devcluster.core()
        .list_namespaced_pod(namespace, label_selector=f"controller-uid={uid}")
        .items
    }
    stored = kept()
    assert before <= stored and not left & stored, (before, left, stored)
    result, failure = finish_stage(hook, namespace, identity, done, completions=completions, log=LOG)
    assert failure is None and result["completed_indexes"] == f"0-{completions - 1}"
    lost = set(range(completions)) - left - stored  # deleted while no wait watched
    assert IndexSet.parse(result.get("results_unreadable", "")) == IndexSet.of(lost), result
    assert read_results(hook, **result["results_ref"]) == {
        i: expected(i) for i in range(completions) if i not in lost
    }
    assert len(lost) <= 6, lost
    record_property("gc_lost", len(lost))
