"""Run a failed try's compensation Job and record it (I/O around
:mod:`airflow_provider_kbatch.pipeline.compensation`).

Called by the operator after a try failed, before it raises the failure: the Job is created (or
adopted: its name is a pure function of the task instance and the try), waited for with the one
watch-based wait (``wait``, given by the operator), and its outcome attached to the failed
attempt in the run ledger. A compensation that fails is logged and recorded (``state: failed``)
and the try's own failure is raised all the same.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import partial
from typing import Any

from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.engine.submission import submit
from airflow_provider_kbatch.engine.waiter import Log
from airflow_provider_kbatch.pipeline import compensation as rules
from airflow_provider_kbatch.pipeline import records
from airflow_provider_kbatch.pipeline.workspace import read_workspace
from airflow_provider_kbatch.spec.actions import StageAction
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.status import job_outcome

#: waits for the named Job in the namespace, within the timeout (seconds); the finished Job or None
Wait = Callable[[str, str, float], "dict[str, Any] | None"]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compensate(
    hook: Any,
    namespace: str,
    identity: JobIdentity,
    *,
    stage: StageSpec,
    failed_job: dict[str, Any],
    output: str | None,
    action: StageAction | None,
    failed: IndexSet,
    resume: bool,
    final: bool,
    wait: Wait,
    log: Log,
) -> dict[str, Any] | None:
    """Quarantine the try's partial output and run ``action`` when due; the ledger entry written
    (``None`` when there was nothing to do)."""
    data = ledger.read(hook, namespace, identity.dag_id, identity.run_id)
    workspace = read_workspace(data)
    claim = workspace.claim if workspace is not None and workspace.state == "active" else None
    due = action if rules.action_due(action, final=final) else None
    if (claim is None or output is None) and due is None:
        return None
    record = records.read_stage(data, records.stage_key(identity.task_id, identity.map_index))
    keep = (record.completed if record is not None else IndexSet()) if resume else IndexSet()
    spec, quarantine = rules.compensation_spec(
        stage, identity, claim=claim, output=output, action=due, failed=failed, keep=keep, final=final
    )
    comp = rules.compensation_identity(identity)
    manifest = build_job_manifest(
        spec,
        comp,
        generation=identity.try_number,
        namespace=namespace,
        extra_env={"KBATCH_TRY_NUMBER": str(identity.try_number)},
    )
    name = manifest["metadata"]["name"]
    log.info(
        "compensating failed try %d of %s: job %s/%s (quarantine %s, on_failure %s)",
        identity.try_number,
        identity.task_id,
        namespace,
        name,
        quarantine or "none",
        "runs" if due else "not due",
    )
    state = "failed"
    try:
        job, _ = submit(hook, namespace, manifest, spec_hash(spec))
        finished = wait(namespace, name, due.timeout_seconds if due else 300.0) or job
        outcome = job_outcome(finished)
        state = "succeeded" if outcome.succeeded else ("failed" if outcome.finished else "timed_out")
    except Exception as err:  # the try's own failure is what the task reports
        log.warning("compensation job %s/%s: %s", namespace, name, err)
    entry = {
        "job": name,
        "state": state,
        "quarantine": quarantine,
        "claim": claim if quarantine else None,
        "failed": str(failed),
        "kept": str(keep) if quarantine else None,
        "on_failure": due is not None,
        "final": final,
        "at": _now(),
    }
    meta = failed_job.get("metadata", {})
    mutate = partial(
        rules.record_compensation,
        key=records.stage_key(identity.task_id, identity.map_index),
        job=meta.get("name", ""),
        uid=meta.get("uid"),
        compensation=entry,
    )
    ledger.write(hook, namespace, identity.dag_id, identity.run_id, lambda d: mutate(d))
    level = log.info if state == "succeeded" else log.warning
    level("compensation of try %d %s: %s", identity.try_number, state, entry)
    return entry
