"""Compensation of a failed try (pure): where its partial output goes, the one-pod Job that moves
it there and runs the author's ``on_failure`` action, and its record in the run ledger.

After a try of a stage fails, the operator runs one *compensation Job* (name
``kb-<task>:compensate-...-g<try>``: its own identity, so it is never taken for an attempt of the
stage). Its pod mounts the run's directory of the workspace (``runs/<run key>``) and

1. **quarantines** (when the stage has ``output=`` on a workspace): ``python -m
   airflow_provider_kbatch.runtime quarantine`` moves, by ``rename(2)`` on one file system, every
   file of ``runs/<rk>/outputs/<output>`` that no *kept* index's part manifest lists to
   ``runs/<rk>/quarantine/<task>[.<map index>]/try-<n>/`` (:func:`quarantine_subpath`). Kept are
   the indexes the ledger records as completed when the stage resumes (``resume=True``): a retry
   runs only the others, so their parts and files must stay; with ``resume=False`` nothing is
   kept. The step runs in the stage's image with the stage's environment (the image has the
   runtime: a producing stage writes its manifest with ``runtime.OutputWriter``);
2. **runs ``on_failure``** (when given and due, :func:`action_due`) as the main container, after
   the quarantine step (an init container), with ``KBATCH_FAILED_INDEXES``,
   ``KBATCH_QUARANTINE_PATH`` (the quarantine, in the run's directory mounted read-only at
   ``/kbatch/run``; ``""`` without one),
   ``KBATCH_FINAL`` and ``KBATCH_TRY_NUMBER``.

The failed attempt's ledger entry gets ``compensation``: ``{job, state, quarantine (claim-relative
path or null), claim, failed, kept, on_failure, at}`` (:func:`record_compensation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.pipeline.ledger_budget import compact_record
from airflow_provider_kbatch.pipeline.ledger_schema import RECORD_BUDGET_BYTES, LedgerError, dump, load_record
from airflow_provider_kbatch.pipeline.workspace import VOLUME_NAME, output_subpath, run_dir
from airflow_provider_kbatch.runtime import env as runtime_env
from airflow_provider_kbatch.spec.actions import StageAction
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import env_var
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec

RUN_MOUNT = "/kbatch/run"
QUARANTINE_CONTAINER = "kbatch-quarantine"
QUARANTINE_COMMAND = ("python", "-m", "airflow_provider_kbatch.runtime", "quarantine")
TASK_SUFFIX = ":compensate"  # ':' is not allowed in Airflow task ids: never another task's identity
# the pod-level fields the compensation Job takes from the stage
_POD_FIELDS = (
    "pod_security",
    "run_as",
    "service_account_name",
    "node_selector",
    "tolerations",
    "priority_class_name",
    "image_pull_policy",
    "image_pull_secrets",
    "ttl_seconds_after_finished",
)


def quarantine_subpath(run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """``runs/<run key>/quarantine/<task>[.<map index>]/try-<n>`` on the run's claim."""
    suffix = f".{map_index}" if map_index >= 0 else ""
    return f"{run_dir(run_id)}/quarantine/{task_id}{suffix}/try-{try_number}"


def compensation_identity(identity: JobIdentity) -> JobIdentity:
    """The compensation Job's identity: the stage's with ``:compensate`` appended to the task id
    (its labels and name differ, so the stage's selector never finds it)."""
    return JobIdentity(
        dag_id=identity.dag_id,
        task_id=identity.task_id + TASK_SUFFIX,
        run_id=identity.run_id,
        map_index=identity.map_index,
        try_number=identity.try_number,
    )


def action_due(action: StageAction | None, *, final: bool) -> bool:
    return action is not None and (action.when == "each_try" or final)


def is_final(*, try_number: int, max_tries: int | None, retries: int, retryable: bool) -> bool:
    """No Airflow retry follows this failed try: not retryable, or the try number is above
    ``max_tries`` (Airflow's rule; ``retries`` when the task instance does not say)."""
    limit = retries if max_tries is None else max_tries
    return not retryable or try_number > limit


def _subpath_under_run(path: str, run_id: str) -> str:
    return path[len(run_dir(run_id)) + 1 :]


def compensation_spec(
    stage: StageSpec,
    identity: JobIdentity,
    *,
    claim: str | None,
    output: str | None,
    action: StageAction | None,
    failed: IndexSet,
    keep: IndexSet,
    final: bool,
) -> tuple[StageSpec, str | None]:
    """The compensation Job's spec and the quarantine's claim-relative path (``None`` without a
    quarantine step). ``action`` is the ``on_failure`` to run now (``None``: not due)."""
    quarantine = (
        quarantine_subpath(identity.run_id, identity.task_id, identity.map_index, identity.try_number)
        if claim is not None and output is not None
        else None
    )
    if quarantine is None and action is None:
        raise ValueError("nothing to compensate: no quarantine and no on_failure action")
    base = {name: getattr(stage, name) for name in _POD_FIELDS}
    volumes: tuple[dict[str, Any], ...] = ()
    run_mount = {"name": VOLUME_NAME, "mountPath": RUN_MOUNT, "subPath": run_dir(identity.run_id)}
    step: dict[str, Any] | None = None
    if quarantine is not None:
        assert claim is not None and output is not None
        volumes = ({"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": claim}},)
        step_env = {
            runtime_env.QUARANTINE_SOURCE: f"{RUN_MOUNT}/{_subpath_under_run(output_subpath(identity.run_id, output), identity.run_id)}",
            runtime_env.QUARANTINE_PATH: f"{RUN_MOUNT}/{_subpath_under_run(quarantine, identity.run_id)}",
            runtime_env.KEEP_INDEXES: str(keep),
        }
        # the stage's own environment first: the step finds the runtime the way the stage does
        inherited = {k: v for k, v in stage.env.items() if k not in step_env}
        step = {
            "name": QUARANTINE_CONTAINER,
            "image": stage.image,
            "command": list(QUARANTINE_COMMAND),
            "env": [env_var(k, v) for k, v in {**inherited, **step_env}.items()],
            "volumeMounts": [run_mount],
        }
    in_run = f"{RUN_MOUNT}/{_subpath_under_run(quarantine, identity.run_id)}" if quarantine else ""
    context = {
        runtime_env.FAILED_INDEXES: str(failed),
        runtime_env.QUARANTINE_PATH: in_run,
        runtime_env.FINAL: "true" if final else "false",
    }
    if action is None:  # the quarantine step alone is the main container
        assert step is not None
        return (
            StageSpec(
                image=stage.image,
                command=QUARANTINE_COMMAND,
                env={**inherited, **step_env},
                container_name=QUARANTINE_CONTAINER,
                volumes=volumes,
                volume_mounts=(run_mount,),
                backoff_limit=0,
                **base,
            ),
            quarantine,
        )
    mounts: tuple[dict[str, Any], ...] = ()
    template = None
    if step is not None and quarantine is not None:
        mounts = ({**run_mount, "readOnly": True},)  # the run's directory: it exists already
        template = {"spec": {"template": {"spec": {"initContainers": [step]}}}}
    return (
        StageSpec(
            image=action.image or stage.image,
            command=tuple(action.command),
            args=tuple(action.args) or None,
            env={**action.env, **context},
            volumes=volumes,
            volume_mounts=mounts,
            job_template=template,
            backoff_limit=0,
            **base,
        ),
        quarantine,
    )


def record_compensation(
    data: Mapping[str, str],
    key: str,
    *,
    job: str,
    uid: str | None,
    compensation: Mapping[str, Any],
) -> dict[str, str]:
    """Attach ``compensation`` to the attempt of Job ``job`` (uid ``uid``) of the stage record
    under ``key``. Idempotent; ``LedgerError`` when the attempt is not recorded."""
    text = data.get(key)
    if text is None:
        raise LedgerError(f"ledger key {key!r}: no stage record to attach a compensation to")
    raw = load_record(text)
    for attempt in reversed(raw.get("attempts", [])):
        if attempt.get("job") == job and (uid is None or attempt.get("uid") in (None, uid)):
            attempt["compensation"] = dict(compensation)
            break
    else:
        raise LedgerError(f"ledger key {key!r}: no attempt for Job {job!r} to attach a compensation to")
    out = dict(data)
    out[key] = dump(compact_record(raw, RECORD_BUDGET_BYTES))
    return out


def compensations(data: Mapping[str, str] | None, key: str) -> list[dict[str, Any]]:
    """The compensation entries of the stage's attempts, oldest first (``try_number`` added)."""
    text = (data or {}).get(key)
    if text is None:
        return []
    raw = load_record(text)
    return [
        {**a["compensation"], "try_number": a.get("try_number"), "attempt_job": a.get("job")}
        for a in raw.get("attempts", [])
        if isinstance(a.get("compensation"), dict)
    ]
