"""Read one stage for the UI: ledger record, latest Job, every pod of its Jobs (through a hook).

Typed against the hook protocol like the rest of the engine (no Airflow, no Kubernetes client).
Read-only: nothing here writes to the cluster. Works from the ledger alone when the Job is gone.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.engine.indexgrid import IndexGrid, build_grid
from airflow_provider_kbatch.engine.podpages import pages
from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline import ledger_names
from airflow_provider_kbatch.pipeline.ledger_schema import StageRecord
from airflow_provider_kbatch.pipeline.stage_records import read_stage
from airflow_provider_kbatch.spec.names import JobIdentity, run_labels, selector_for
from airflow_provider_kbatch.status import slim_pod

#: Lines of a pod's log the view shows at most (the API's ``tail`` is capped to it).
MAX_LOG_LINES = 2000
MAX_LOG_BYTES = 256 * 1024


@dataclass(frozen=True)
class StageView:
    grid: IndexGrid
    record: StageRecord | None
    job_name: str | None
    job_names: frozenset[str] = frozenset()  # every Job of the stage that still exists


def _latest_job(jobs: list[dict[str, Any]], name: str | None) -> dict[str, Any] | None:
    if name:
        for job in jobs:
            if (job.get("metadata") or {}).get("name") == name:
                return job
    if not jobs:
        return None
    return max(jobs, key=lambda j: str((j.get("metadata") or {}).get("creationTimestamp") or ""))


def read_stage_view(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    *,
    completions: int,
    job_name: str | None = None,
    now: datetime.datetime | None = None,
) -> StageView:
    """The stage's grid from the cluster (Job, pods) and the run ledger, whatever still exists."""
    data = ledger.read(hook, namespace, identity.dag_id, identity.run_id)
    record = read_stage(data, ledger_names.stage_key(identity.task_id, identity.map_index))
    selector = selector_for(identity)
    jobs = hook.list_jobs(namespace, selector)
    job = _latest_job(
        jobs, job_name or (record.latest_attempt.job if record and record.latest_attempt else None)
    )
    # a page at a time, slimmed: a 100,000-index stage's pods are not held whole (engine/podpages.py)
    pods = [slim_pod(p) for page in pages(hook, namespace, selector) for p in page] if jobs else None
    grid = build_grid(
        completions,
        record=record,
        job=job,
        pods=pods,
        now=now or datetime.datetime.now(datetime.timezone.utc),
    )
    names = frozenset(str((j.get("metadata") or {}).get("name")) for j in jobs)
    return StageView(
        grid=grid, record=record, job_name=(job or {}).get("metadata", {}).get("name"), job_names=names
    )


def read_run_jobs(hook: Any, namespace: str, dag_id: str, run_id: str) -> frozenset[str]:
    """Names of the run's Jobs that still exist in ``namespace`` (every stage, every generation)."""
    selector = ",".join(f"{k}={v}" for k, v in run_labels(dag_id, run_id).items())
    return frozenset(str((j.get("metadata") or {}).get("name")) for j in hook.list_jobs(namespace, selector))


def read_run_stages(hook: Any, namespace: str, dag_id: str, run_id: str) -> dict[str, StageRecord]:
    """Every stage record of the run's ledger in ``namespace``, by ledger key."""
    data = ledger.read(hook, namespace, dag_id, run_id)
    out: dict[str, StageRecord] = {}
    for key in ledger_names.stage_keys(data):
        try:
            record = read_stage(data, key)
        except KbatchError:  # a malformed record is skipped, not a broken view
            continue
        if record is not None:
            out[key] = record
    return out


def pod_log_tail(
    hook: Any, namespace: str, identity: JobIdentity, pod: str, *, lines: int = 200
) -> dict[str, Any]:
    """The tail of one attempt's log, only for a pod of this very stage (checked by its labels).

    ``{"pod", "exists": False, "log": None, "message"}`` when the pod is gone.
    """
    lines = max(1, min(int(lines), MAX_LOG_LINES))
    selector = selector_for(identity)
    pods = hook.list_pods(namespace, selector, field_selector=f"metadata.name={pod}")
    if not pods:
        return {
            "pod": pod,
            "exists": False,
            "log": None,
            "message": f"pod {pod} no longer exists (deleted with its Job, or never was a pod of this "
            "stage): its log is gone from the cluster; the task log has the lines streamed while it ran",
        }
    containers = [c.get("name") for c in ((pods[0].get("spec") or {}).get("containers") or [])]
    container = containers[0] if containers else None
    try:
        text = hook.read_pod_log(namespace, pod, container, tail_lines=lines, limit_bytes=MAX_LOG_BYTES)
    except KbatchError as err:  # not started yet, or the node no longer serves it
        return {"pod": pod, "exists": True, "log": None, "message": f"no log for pod {pod}: {err}"}
    return {"pod": pod, "exists": True, "container": container, "log": text, "message": None}


def stage_location(manifest: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(namespace, job name) of the Job a task published as its XCom ``job_manifest``."""
    meta = (manifest or {}).get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name")
    return (ns if isinstance(ns, str) else None, name if isinstance(name, str) else None)
