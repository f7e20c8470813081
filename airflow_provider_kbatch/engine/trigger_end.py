"""Whether a deferred stage may end in the triggerer, decided in one pure function.

Airflow 3.3 lets a trigger end its task: it yields ``TaskSuccessEvent(xcoms=...)`` and the
triggerer sets the task instance's state and pushes the XComs (``airflow/models/trigger.py``,
``handle_event_submit``), with no worker resuming the task for ``execute_complete``. That saves
the scheduling round trip after the Job ends, but the triggerer does less than a worker: it emits
no outlet Asset events, writes no rendered fields, runs neither ``pre_execute`` / ``post_execute``
nor ``on_execute_callback``, records no mapped-task lengths, writes XComs past any custom XCom
backend, and a failure it reports retries whenever the task is eligible (a ``FailJob`` failure
could not stay final). So a stage ends in the triggerer only when nothing is left that needs a
worker, and :func:`fallback_reasons` names every reason it must not.

It is asked twice with what is known each time: in the worker at the deferral (the task's static
facts: the trigger is told to end the task only when none applies) and in the triggerer when the
Job has ended (the outcome, whether the Job still is the one the rendered fields show, whether
the triggerer's Airflow can end a task).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

#: every reason a stage resumes in a worker instead, and what it means
REASONS: dict[str, str] = {
    "disabled": "ending in the triggerer is off (end_in_triggerer=False or [kbatch] end_in_triggerer)",
    "airflow_without_task_end_events": "the triggerer's Airflow has no TaskSuccessEvent (airflow.triggers.base)",
    "outlets": "the task has outlets: the triggerer emits no Asset events",
    "cache": "cache=True: the cache index is written by execute_complete",
    "tracing": "the stage is traced but the triggerer has no tracer provider: execute_complete ends the stage span",
    "mapped_downstream": "a downstream task is mapped over this task's XCom (its length is recorded by a worker)",
    "task_hooks": "pre_execute, post_execute or on_execute_callback would run again on the worker",
    "execute_complete_overridden": "a subclass overrides execute_complete",
    "custom_xcom_backend": "[core] xcom_backend is not the default: the triggerer writes XComs to the database",
    "not_in_triggerer": "the trigger runs outside a triggerer (airflow dags test), which resumes the task with the event's payload",
    "not_succeeded": "the Job did not succeed: execute_complete fails the task (FailJob stays final, on_failure runs)",
    "manifest_changed": "the Job changed since the deferral: the rendered job_manifest is refreshed by a worker",
}


@dataclass(frozen=True)
class EndFacts:
    """What the decision depends on. ``job_succeeded`` is None at the deferral (not known yet)."""

    enabled: bool = True
    airflow_can_end_task: bool = True
    outlets: bool = False
    cache: bool = False
    tracing: bool = False
    mapped_downstream: bool = False
    task_hooks: bool = False
    execute_complete_overridden: bool = False
    custom_xcom_backend: bool = False
    in_triggerer: bool = True
    job_succeeded: bool | None = None
    manifest_changed: bool = False


def fallback_reasons(facts: EndFacts) -> tuple[str, ...]:
    """The reasons (keys of :data:`REASONS`, in that order) the task must resume in a worker;
    empty: the trigger ends it. Pure."""
    found = {
        "disabled": not facts.enabled,
        "airflow_without_task_end_events": not facts.airflow_can_end_task,
        "outlets": facts.outlets,
        "cache": facts.cache,
        "tracing": facts.tracing,
        "mapped_downstream": facts.mapped_downstream,
        "task_hooks": facts.task_hooks,
        "execute_complete_overridden": facts.execute_complete_overridden,
        "custom_xcom_backend": facts.custom_xcom_backend,
        "not_in_triggerer": not facts.in_triggerer,
        "not_succeeded": facts.job_succeeded is False,
        "manifest_changed": facts.manifest_changed,
    }
    return tuple(reason for reason in REASONS if found[reason])


def job_as_ran(job: dict[str, Any]) -> dict[str, Any]:
    """The Job as the API server holds it (defaults included), without status and bookkeeping:
    the XCom ``job_manifest`` and the rendered field of the same name."""
    meta = job.get("metadata") or {}
    return {
        "apiVersion": job.get("apiVersion", "batch/v1"),
        "kind": job.get("kind", "Job"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "labels", "annotations") if k in meta},
        "spec": job.get("spec") or {},
    }


def manifest_digest(manifest: dict[str, Any]) -> str:
    """A stable digest of a manifest (sorted keys), to tell whether the Job changed."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
