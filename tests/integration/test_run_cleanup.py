"""Freeing a run's storage, and removing superseded attempts, on the real control plane (the Job,
garbage-collector and pvc-protection controllers; the process node provisions the claims and runs
the pods), as the shipped ServiceAccount: the Role of the Helm chart
(deploy/helm/kbatch/templates/rbac.yaml) is all the code needs.

* A claim deleted on its own stays ``Terminating`` while the run's completed pods exist -- until
  their Jobs' TTL, a day by default. ``KbatchWorkspaceCleanupOperator`` deletes the run's finished
  Jobs (and so their pods) first: the claim object is gone within seconds, for five runs in a row,
  and no pod of them is left; a running Job of another DAG is untouched.
* A resumed attempt that succeeded leaves the failed attempt's ``Failed 2/3`` Job beside its own
  ``Complete 1/1``; ``remove_superseded`` deletes it (and its pods) once the ledger holds its
  indexes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from airflow_provider_kbatch.engine import ledger, storage
from airflow_provider_kbatch.engine.outcome import finish_stage
from airflow_provider_kbatch.engine.submission import (
    GENERATION_ANNOTATION,
    plan_submission,
    remove_superseded,
)
from airflow_provider_kbatch.hooks.kbatch import KbatchHook
from airflow_provider_kbatch.operators.workspace import KbatchWorkspaceCleanupOperator
from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity, selector_for
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.status import job_outcome
from tests.conftest import ClusterHandle, wait_until
from tests.integration.test_rbac import ServiceAccountAccess, sa_access  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

DAG_ID = "kbatch_cleanup"
WORKSPACE = ws.Workspace(create=True, size="10Mi")
QUICK = ("python", "-c", "import os; print('index', os.environ['KBATCH_INDEX'])")


def run_id(day: int) -> str:
    return f"scheduled__2026-01-{day:02d}T00:00:00+00:00"


def run_job(
    hook: KbatchHook,
    namespace: str,
    identity: JobIdentity,
    spec: StageSpec,
    *,
    generation: int = 1,
    index_map: IndexSet | None = None,
) -> dict[str, Any]:
    """Create the attempt's Job as the operator does, record its start, and wait until it finished."""
    manifest = build_job_manifest(
        spec,
        identity,
        generation=generation,
        namespace=namespace,
        index_map=index_map,
        extra_env={"KBATCH_TRY_NUMBER": str(identity.try_number)},
        extra_annotations={GENERATION_ANNOTATION: str(generation)},
    )
    job = hook.create_job(namespace, manifest)
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    ledger.attempt_started(
        hook,
        namespace,
        identity,
        job=name,
        uid=uid,
        spec_hash=spec_hash(spec),
        index_map=index_map or IndexSet.full(spec.completions),
    )

    def finished() -> dict[str, Any] | None:
        current = hook.get_job(namespace, name)
        return current if current and job_outcome(current).finished else None

    return wait_until(finished, timeout=120, interval=0.2, what=f"job {name} finished")  # type: ignore[no-any-return]


def small_run(hook: KbatchHook, namespace: str, day: int) -> str:
    """Two 3-index stages of one run on its workspace claim; returns the claim."""
    for task in ("ingest", "transform"):
        identity = JobIdentity(dag_id=DAG_ID, task_id=task, run_id=run_id(day))
        prepared = storage.prepare_stage(
            hook,
            namespace,
            identity,
            workspace=WORKSPACE,
            ports=ws.Ports.build(output=f"{task}_out"),
            spec=StageSpec(image="python:3.11-slim", command=QUICK, completions=3, parallelism=3),
            declared={},
            logical_date=None,
            log=log,
        )
        job = run_job(hook, namespace, identity, prepared.spec)
        assert job_outcome(job).succeeded
    return prepared.claim


class TaskInstance:
    def __init__(self, day: int) -> None:
        self.dag_id, self.task_id, self.run_id = DAG_ID, "cleanup", run_id(day)


def pods_of(devcluster: ClusterHandle, namespace: str, selector: str = "kbatch.io/dag-id") -> list[str]:
    return [
        p.metadata.name
        for p in devcluster.core().list_namespaced_pod(namespace, label_selector=selector).items
    ]


def claim_state(devcluster: ClusterHandle, namespace: str, claim: str) -> str:
    from kubernetes.client.exceptions import ApiException

    try:
        pvc = devcluster.core().read_namespaced_persistent_volume_claim(claim, namespace)
    except ApiException as err:
        if err.status == 404:
            return "gone"
        raise
    return "Terminating" if pvc.metadata.deletion_timestamp else str(pvc.status.phase)


def test_deleting_only_the_claim_leaves_it_terminating_while_the_runs_pods_exist(
    sa_access: ServiceAccountAccess,  # noqa: F811
    devcluster: ClusterHandle,
    record_property: Any,
) -> None:
    """What the cleanup did before: the claim deleted (and recorded), but held by the pods."""
    ns, hook = sa_access.namespace, sa_access.hook()
    claim = small_run(hook, ns, 1)
    identity = JobIdentity(dag_id=DAG_ID, task_id="cleanup", run_id=run_id(1))
    assert storage.delete_workspace(hook, ns, identity, WORKSPACE, log) == claim
    time.sleep(5)
    assert claim_state(devcluster, ns, claim) == "Terminating"
    record_property("claim_alone_terminating_after_s", 5)
    assert len(pods_of(devcluster, ns)) == 6, "the completed pods hold it (until their Jobs' TTL)"


@pytest.mark.timeout(600)
def test_cleanup_deletes_the_runs_finished_jobs_and_the_claim_is_gone_within_seconds(
    sa_access: ServiceAccountAccess,  # noqa: F811
    devcluster: ClusterHandle,
    record_property: Any,
) -> None:
    ns, hook = sa_access.namespace, sa_access.hook()
    # a Job of another DAG, still running: never touched
    other = JobIdentity(dag_id="kbatch_other", task_id="sleeper", run_id=run_id(1))
    sleeper = build_job_manifest(
        StageSpec(image="python:3.11-slim", command=("python", "-c", "import time; time.sleep(600)")),
        other,
        generation=1,
        namespace=ns,
    )
    hook.create_job(ns, sleeper)
    claims = {day: small_run(hook, ns, day) for day in range(1, 6)}
    pods_before = len(pods_of(devcluster, ns, f"kbatch.io/dag-id={DAG_ID}"))
    assert pods_before == 5 * 2 * 3

    figures = []
    for day, claim in claims.items():
        op = KbatchWorkspaceCleanupOperator(
            task_id="cleanup", workspace=WORKSPACE, namespace=ns, config_file=str(sa_access.kubeconfig),
            check_run=False, claim_wait_seconds=60,
        )  # fmt: skip
        started = time.monotonic()
        assert op.execute({"ti": TaskInstance(day)}) == claim  # type: ignore[arg-type]
        figures.append(time.monotonic() - started)
        assert claim_state(devcluster, ns, claim) == "gone", "gone, not Terminating"
        record = ws.read_workspace(storage.read_ledger(hook, ns, DAG_ID, run_id(day)))
        assert record is not None and record.state == "deleted"
        assert len(pods_of(devcluster, ns, f"kbatch.io/dag-id={DAG_ID}")) == (5 - day) * 6, (
            "only its run's pods"
        )

    pods_after = pods_of(devcluster, ns, f"kbatch.io/dag-id={DAG_ID}")
    assert pods_after == []
    wait_until(  # foreground deletion: a Job object goes just after its pods
        lambda: (
            [j.metadata.name for j in devcluster.batch().list_namespaced_job(ns).items]
            == [sleeper["metadata"]["name"]]
        ),
        timeout=30,
        what="only the other DAG's running Job left",
    )
    assert len(pods_of(devcluster, ns, "kbatch.io/dag-id=kbatch_other")) == 1
    record_property("pods_before_cleanup_5_runs", pods_before)
    record_property("pods_after_cleanup_5_runs", len(pods_after))
    record_property("cleanup_to_claim_gone_max_s", round(max(figures), 2))
    record_property("cleanup_to_claim_gone_median_s", round(sorted(figures)[2], 2))
    log.warning(
        "measured: 5 runs, %d pods before cleanup, %d after; cleanup call to claim gone: %s s",
        pods_before,
        len(pods_after),
        ", ".join(f"{f:.2f}" for f in figures),
    )


FAIL_INDEX_1_ON_TRY_1 = (
    "python",
    "-c",
    "import os, sys; i, t = os.environ['KBATCH_INDEX'], os.environ['KBATCH_TRY_NUMBER']; "
    "print('index', i, 'try', t); sys.exit(3 if (i, t) == ('1', '1') else 0)",
)


@pytest.mark.timeout(300)
def test_a_successful_resume_removes_the_failed_attempts_job(
    sa_access: ServiceAccountAccess,  # noqa: F811
    devcluster: ClusterHandle,
    record_property: Any,
) -> None:
    ns, hook = sa_access.namespace, sa_access.hook()
    spec = StageSpec(
        image="python:3.11-slim", command=FAIL_INDEX_1_ON_TRY_1, completions=3, parallelism=3, backoff_limit_per_index=0
    )  # fmt: skip
    digest = spec_hash(spec)
    first_try = JobIdentity(dag_id=DAG_ID, task_id="squares", run_id=run_id(9), try_number=1)
    first = run_job(hook, ns, first_try, spec)
    _, failure = finish_stage(hook, ns, first_try, first, completions=3, log=log)
    assert failure is not None and failure.retryable, failure

    second_try = JobIdentity(dag_id=DAG_ID, task_id="squares", run_id=run_id(9), try_number=2)
    plan = plan_submission(
        identity=second_try,
        spec_hash=digest,
        completions=3,
        existing_jobs=hook.list_jobs(ns, selector_for(second_try)),
        completed=ledger.completed_for_resume(hook, ns, second_try, digest),
        resume=True,
    )
    assert plan.action == "create" and str(plan.index_map) == "1", plan
    second = run_job(hook, ns, second_try, spec, generation=plan.generation, index_map=plan.index_map)
    result, failure = finish_stage(hook, ns, second_try, second, completions=3, log=log)
    assert failure is None and result["completed_indexes"] == "0-2"

    def table() -> list[tuple[str, str]]:
        return sorted(
            (j.metadata.name, f"{j.status.succeeded or 0}/{j.spec.completions}")
            for j in devcluster.batch().list_namespaced_job(ns, label_selector=selector_for(second_try)).items
        )

    before = table()
    assert before == sorted([(first["metadata"]["name"], "2/3"), (second["metadata"]["name"], "1/1")])
    removed = remove_superseded(hook, ns, second_try, second, log=log)
    assert removed == [first["metadata"]["name"]]
    wait_until(
        lambda: table() == [(second["metadata"]["name"], "1/1")], timeout=60, what="only the Complete job"
    )
    uid = first["metadata"]["uid"]
    wait_until(
        lambda: pods_of(devcluster, ns, f"batch.kubernetes.io/controller-uid={uid}") == [],
        timeout=60,
        what="the superseded job's pods deleted",
    )
    record = ledger.read_stage(hook, ns, second_try)
    assert record is not None and [a.job for a in record.attempts] == [
        first["metadata"]["name"],
        second["metadata"]["name"],
    ]
    assert record.attempts[0].failed == IndexSet.parse("1"), "the failed attempt's record stays"
    record_property("jobs_after_successful_resume_before", len(before))
    record_property("jobs_after_successful_resume_after", len(table()))
