"""Ending a succeeded stage in the triggerer, without a worker resuming it.

When the operator deferred with ``end_task`` (none of the static reasons of
:func:`~airflow_provider_kbatch.engine.trigger_end.fallback_reasons` applied), the trigger does on
success what ``execute_complete`` does -- reads the Job again, logs it as it ran, gathers the
results and records the attempt in the ledger (:func:`~airflow_provider_kbatch.engine.outcome.finish_stage`),
emits the stage's metrics, deletes superseded attempts -- and yields
``TaskSuccessEvent(xcoms={"return_value": <result>, "job_manifest": <the Job as it ran>})``:
Airflow then marks the task instance success and pushes the XComs from the triggerer
(``airflow.models.trigger.handle_event_submit``), and no worker runs the task a second time.

Anything else -- the Job failed or was replaced, it changed since the deferral, the triggerer's
Airflow cannot end a task, or finishing here raised -- returns None, and the trigger yields its
ordinary event for ``execute_complete`` (which redoes every step; each is idempotent).

The engine is synchronous; its calls run in a thread (``asyncio.to_thread``) through the
trigger's sync hook, so the triggerer's event loop never blocks on the API server.
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_kbatch.engine.outcome import finish_stage
from airflow_provider_kbatch.engine.submission import job_index_map, remove_superseded
from airflow_provider_kbatch.engine.trigger_end import (
    REASONS,
    EndFacts,
    fallback_reasons,
    job_as_ran,
    manifest_digest,
)
from airflow_provider_kbatch.glue.metrics import emit as emit_metrics
from airflow_provider_kbatch.glue.metrics import failure_reasons, stage_metrics
from airflow_provider_kbatch.glue.tracing import StageTrace, tracing_on
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL, JobIdentity
from airflow_provider_kbatch.status import job_outcome

try:  # Airflow 2.10+ / 3.x; the gate is what the triggerer's Airflow has
    from airflow.triggers.base import TaskSuccessEvent
except ImportError:  # pragma: no cover - every supported Airflow has it
    TaskSuccessEvent = None  # type: ignore[assignment,misc,unused-ignore]

#: the line the task log shows when the triggerer ended the task (the e2e test looks for it)
ENDED_LINE = "the task ended in the triggerer (TaskSuccessEvent): no worker resumes it"


def task_end_events_available() -> bool:
    """Whether this process's Airflow lets a trigger end its task."""
    return TaskSuccessEvent is not None


def end_task_spec(
    identity: JobIdentity,
    *,
    completions: int,
    job: dict[str, Any],
    xcom_return: bool,
    multiple_outputs: bool,
    trace: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The trigger's ``end_task`` argument (plain JSON): what finishing needs of the stage;
    ``trace``: the stage's :class:`~airflow_provider_kbatch.glue.tracing.StageTrace` (the trigger
    ends the stage span), None when tracing is off."""
    return {
        "identity": {
            "dag_id": identity.dag_id,
            "task_id": identity.task_id,
            "run_id": identity.run_id,
            "map_index": identity.map_index,
            "try_number": identity.try_number,
        },
        "completions": completions,
        "manifest_digest": manifest_digest(job_as_ran(job)),
        "xcom_return": xcom_return,
        "multiple_outputs": multiple_outputs,
        "trace": trace,
    }


def explain(reasons: tuple[str, ...]) -> str:
    return "; ".join(f"{r} ({REASONS[r]})" for r in reasons)


async def end_task(trigger: Any, spec: dict[str, Any], event: dict[str, Any]) -> TriggerEvent | None:
    """Finish the stage in the triggerer and return the ``TaskSuccessEvent``; None: the task
    resumes in a worker with the ordinary ``event`` (the reason is logged)."""
    log = trigger.log
    namespace, name = event["namespace"], event["name"]
    try:
        identity = JobIdentity(**spec["identity"])
        completions = int(spec["completions"])
    except (KeyError, TypeError, ValueError) as err:  # a spec of another version: the worker decides
        log.warning("end_task %r unreadable (%s): the task resumes in a worker", spec, err)
        return None
    reader = trigger.async_hook()
    job = None
    if event.get("status") == "finished" and event.get("succeeded"):
        try:
            job = await reader.get_job(namespace, name)
        except Exception as err:  # execute_complete reads it again (and reports what it finds)
            log.warning("reading job %s/%s failed (%s): the task resumes in a worker", namespace, name, err)
            return None
    succeeded = (
        job is not None and job_outcome(job).succeeded and job["metadata"].get("uid") == event.get("uid")
    )
    manifest = job_as_ran(job) if job is not None else None
    facts = EndFacts(
        airflow_can_end_task=task_end_events_available(),
        # a triggerer hands the trigger its task instance; `airflow dags test` runs it inline
        # without one and resumes the task with the event's payload whatever its class
        in_triggerer=trigger.task_instance is not None,
        tracing=StageTrace.from_dict(spec.get("trace")).enabled and not tracing_on(),
        job_succeeded=succeeded,
        manifest_changed=manifest is not None and manifest_digest(manifest) != spec.get("manifest_digest"),
    )
    reasons = fallback_reasons(facts)
    if reasons or job is None or manifest is None:
        log.info("the task resumes in a worker for execute_complete: %s", explain(reasons) or "no Job")
        return None
    try:
        return await _finish(trigger, reader, spec, identity, completions, job, manifest, event)
    except Exception:  # execute_complete redoes every step; a retry of them is harmless
        log.exception(
            "finishing job %s/%s in the triggerer failed: the task resumes in a worker", namespace, name
        )
        return None


async def _finish(
    trigger: Any,
    reader: Any,
    spec: dict[str, Any],
    identity: JobIdentity,
    completions: int,
    job: dict[str, Any],
    manifest: dict[str, Any],
    event: dict[str, Any],
) -> TriggerEvent:
    import yaml

    log = trigger.log
    namespace, name = event["namespace"], event["name"]
    hook = trigger.hook  # sync: the engine runs in a thread
    stage_trace = StageTrace.from_dict(spec.get("trace"))
    log.info(
        "the Job %s/%s as it ran (also the XCom job_manifest):\n%s",
        namespace,
        name,
        yaml.safe_dump(manifest, sort_keys=False, width=110),
    )
    stage_trace.start("results")
    result, failure = await asyncio.to_thread(
        finish_stage, hook, namespace, identity, job, completions=completions, log=log, output_name=None
    )
    if failure is not None:  # cannot happen for a succeeded Job; never end a failure here
        raise RuntimeError(f"the Job's outcome changed while finishing: {failure.message}")
    pods = await reader.list_pods(namespace, f"{CONTROLLER_UID_LABEL}={job['metadata']['uid']}")
    emit_metrics(
        stage_metrics(job, event, result),
        succeeded=True,
        tags={"dag_id": identity.dag_id, "task_id": identity.task_id, "namespace": namespace},
        reasons=failure_reasons(pods),
    )
    await asyncio.to_thread(remove_superseded, hook, namespace, identity, job, log=log)
    stage_trace.stop("results")
    stage_trace.end(
        identity.task_id,
        job=job,
        pods=pods,
        index_map=job_index_map(job),
        attributes={"kbatch.namespace": namespace, "kbatch.job": name},
    )
    xcoms: dict[str, Any] = {"job_manifest": manifest}
    if spec.get("xcom_return", True):
        if spec.get("multiple_outputs"):
            xcoms.update(result)
        xcoms["return_value"] = result
    log.info("%s: job %s/%s, %s", ENDED_LINE, namespace, name, result["summary"])
    assert TaskSuccessEvent is not None  # fallback_reasons checked it
    return TaskSuccessEvent(xcoms=xcoms)
