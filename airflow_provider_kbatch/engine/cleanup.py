"""Freeing a finished DAG run's storage: its finished Jobs (and so their pods), then its claim.

Deleting a claim only marks it: it stays ``Terminating`` (the ``kubernetes.io/pvc-protection``
finalizer) while a pod that mounts it exists, and a completed pod exists until the garbage
collector deletes it with its Job -- after the Job's ``ttlSecondsAfterFinished`` (a day by
default). :func:`free_workspace` therefore deletes the run's finished kbatch Jobs first
(foreground propagation: their pods go first), then the claim (recorded in the run ledger by
:func:`~airflow_provider_kbatch.engine.storage.delete_workspace`), and waits, bounded, until the
claim object is really gone.

A Job is the run's when its labels select it (managed-by, DAG id, run key) *and* its annotations
carry this DAG id and run id in full (labels are sanitised hashes). A Job that is still running
is never deleted; when one of this run's mounts the claim, nothing is deleted and the cleanup
fails retryably.

No Kubernetes client here: all I/O goes through a ``KbatchHook``-like object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from airflow_provider_kbatch.engine import storage
from airflow_provider_kbatch.engine.podlogs import Log, owned_by
from airflow_provider_kbatch.engine.podpages import pages
from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.status import job_outcome

DEFAULT_WAIT_SECONDS = 120.0
POLL_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)  # then every 2 s


class ClaimInUse(KbatchError):
    """The run's claim is (still) mounted by pods: a running Job of the run, or pods that did not
    go within the wait. Retryable: a later try finds them finished or gone."""


@dataclass(frozen=True)
class CleanupReport:
    """What :func:`free_workspace` did."""

    claim: str | None  # the claim deleted (or whose deletion was completed), if any
    jobs: tuple[str, ...] = ()  # finished Jobs of the run deleted, with their pods
    pods: int = 0  # pods those Jobs had
    kept: tuple[str, ...] = ()  # running Jobs of the run that do not mount the claim: left alone
    seconds: float = 0.0  # from the claim's deletion until it was gone


def run_selector(dag_id: str, run_id: str) -> str:
    """Label selector of every kbatch Job (and pod) of a DAG run, all tasks and attempts."""
    return ",".join(
        f"{k}={v}"
        for k, v in {
            names.LABEL_MANAGED_BY: names.MANAGED_BY,
            names.LABEL_DAG_ID: names.sanitize_label_value(dag_id),
            names.LABEL_RUN_KEY: names.run_key(run_id),
        }.items()
    )


def of_run(job: Mapping[str, Any], dag_id: str, run_id: str) -> bool:
    """The Job's annotations name this very DAG run (full ids, not the hashed labels)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    return (
        annotations.get(names.ANNOTATION_DAG_ID) == dag_id
        and annotations.get(names.ANNOTATION_RUN_ID) == run_id
    )


def mounts_claim(pod_spec: Mapping[str, Any] | None, claim: str) -> bool:
    """The pod spec (a pod's, or a Job's template's) has a volume of claim ``claim``."""
    volumes = (pod_spec or {}).get("volumes") or ()
    return any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in volumes)


def _template_spec(job: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((job.get("spec") or {}).get("template") or {}).get("spec") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def free_workspace(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    workspace: ws.Workspace,
    log: Log,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CleanupReport:
    """Delete the run's finished kbatch Jobs, then its provider-created claim, and wait until the
    claim is gone. Idempotent: a retry after a wait that timed out finishes the job.

    Raises :class:`ClaimInUse` (before deleting anything) when a running Job of this run mounts
    the claim, and when the claim is still there after ``wait_seconds`` (naming the pods of the
    run that still mount it); :class:`~airflow_provider_kbatch.engine.storage.WorkspaceError`
    when the recorded claim is another run's.
    """
    if not workspace.provisioned:
        return CleanupReport(storage.delete_workspace(hook, namespace, identity, workspace, log))
    dag_id, run_id = identity.dag_id, identity.run_id
    record = ws.read_workspace(storage.read_ledger(hook, namespace, dag_id, run_id))
    if record is None:
        log.info("run %s has no workspace claim: nothing to delete", run_id)
        return CleanupReport(None)
    claim = record.claim
    found = hook.get_pvc(namespace, claim)
    if found is not None and not ws.claim_belongs_to(found, dag_id, run_id):
        raise storage.WorkspaceError(f"claim {claim!r} does not belong to run {run_id!r}: not deleting it")
    selector = run_selector(dag_id, run_id)
    jobs = [j for j in hook.list_jobs(namespace, selector) if of_run(j, dag_id, run_id)]
    running = [j for j in jobs if not job_outcome(j).finished]
    blocking = [_name(j) for j in running if mounts_claim(_template_spec(j), claim)]
    if blocking and found is not None:
        raise ClaimInUse(
            f"job(s) {', '.join(blocking)} of run {run_id!r} are still running and mount claim {claim!r}: "
            "nothing deleted; retry once they finished"
        )
    finished = [j for j in jobs if job_outcome(j).finished]
    uids = {(j.get("metadata") or {}).get("uid") for j in finished}
    pods = sum(  # counted a page at a time (engine/podpages.py), never held
        1
        for page in pages(hook, namespace, selector)
        for p in page
        if any(owned_by(p, uid) for uid in uids if uid)
    )
    for job in finished:
        hook.delete_job(namespace, _name(job), propagation="Foreground")
    report = CleanupReport(
        claim=None,
        jobs=tuple(_name(j) for j in finished),
        pods=pods,
        kept=tuple(_name(j) for j in running),
    )
    if finished:
        log.info(
            "deleted %d finished job(s) of run %s and their %d pod(s): %s",
            len(finished),
            run_id,
            pods,
            ", ".join(report.jobs),
        )
    if report.kept:
        log.info("left running job(s) alone (they do not mount the claim): %s", ", ".join(report.kept))
    if found is None:  # gone already (deleted by hand, or by an earlier try of this cleanup)
        if record.state != "deleted":
            storage.delete_workspace(hook, namespace, identity, workspace, log)  # records it
        return report
    deleted = storage.delete_workspace(hook, namespace, identity, workspace, log)
    uid = (found.get("metadata") or {}).get("uid")
    seconds = _wait_gone(hook, namespace, claim, uid, wait_seconds, sleep, clock, selector, log)
    log.info("workspace claim %s/%s is gone, %.1fs after its deletion", namespace, claim, seconds)
    done = deleted is not None or record.state == "deleted"
    return replace(report, claim=claim if done else None, seconds=seconds)


def _wait_gone(
    hook: Any,
    namespace: str,
    claim: str,
    uid: str | None,
    wait_seconds: float,
    sleep: Callable[[float], object],
    clock: Callable[[], float],
    selector: str,
    log: Log,
) -> float:
    """Seconds until claim ``claim`` (of ``uid``) no longer exists; :class:`ClaimInUse` after
    ``wait_seconds``. Polls ``get`` with a short backoff: a few requests for seconds of waiting
    (a watch would need list and watch on claims, which the Role does not grant)."""
    started = clock()
    attempt = 0
    while True:
        current = hook.get_pvc(namespace, claim)
        if current is None or (current.get("metadata") or {}).get("uid") != uid:
            return clock() - started
        if clock() - started >= wait_seconds:
            break
        if attempt == 0:
            log.info("waiting up to %.0fs for claim %s/%s to be gone", wait_seconds, namespace, claim)
        sleep(POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)])
        attempt += 1
    holders = [_name(p) for p in hook.list_pods(namespace, selector) if mounts_claim(p.get("spec"), claim)]
    held = (
        f"pods of the run still mount it: {', '.join(holders)}"
        if holders
        else "no pod of the run mounts it (another pod may: kubectl describe pvc)"
    )
    raise ClaimInUse(
        f"claim {namespace}/{claim} is still there (Terminating) {wait_seconds:.0f}s after its deletion; "
        f"{held}; its deletion is recorded, a retry waits again"
    )
