"""KbatchJobOperator -- one pipeline stage as one native Kubernetes Job -- and the lifecycle
operators (delete, suspend, resume).

Thin Airflow glue: the manifest is built and validated by :mod:`airflow_provider_kbatch.spec`,
submission decided by :mod:`airflow_provider_kbatch.engine.submission`, the outcome read by
:mod:`airflow_provider_kbatch.status`, the wait done by :mod:`airflow_provider_kbatch.engine.waiter`,
and every API call made by :mod:`airflow_provider_kbatch.hooks.kbatch`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.engine.outcome import finish_stage
from airflow_provider_kbatch.engine.submission import GENERATION_ANNOTATION, Plan, plan_submission, submit
from airflow_provider_kbatch.engine.waiter import WaitSettings, wait_for_job
from airflow_provider_kbatch.glue.assets import emit_output_event, output_outlet
from airflow_provider_kbatch.glue.errors import airflow_errors
from airflow_provider_kbatch.glue.metrics import emit as emit_metrics
from airflow_provider_kbatch.glue.metrics import stage_metrics
from airflow_provider_kbatch.glue.settings import default_deferrable, event_hold_seconds
from airflow_provider_kbatch.hooks.connected import KbatchConnected
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.pipeline.workspace import (
    Ports,
    Workspace,
    claim_name,
    ports_problems,
    wire_stage,
)
from airflow_provider_kbatch.spec.errors import KbatchSpecError, KbatchSpecErrors
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity, selector_for
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.spec.validation import validate_stage
from airflow_provider_kbatch.status import job_outcome
from airflow_provider_kbatch.triggers.job import KbatchJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


log = logging.getLogger(__name__)

OnKill = Literal["delete", "suspend", "keep"]


def _load_template(template: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """A Job template as a dict, or from a YAML/JSON file path."""
    if template is None or isinstance(template, Mapping):
        return dict(template) if template is not None else None
    import yaml

    path = Path(template)
    if not path.is_file():
        raise KbatchSpecError(
            "job_template", f"file {template!r} does not exist", "pass a dict or a YAML path"
        )
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise KbatchSpecError("job_template", f"{template!r} does not hold a mapping", "write a Job manifest")
    return loaded


class KbatchJobOperator(KbatchConnected, BaseOperator):
    """Run one stage as one Kubernetes ``batch/v1`` Job and wait for it (deferrable by default).

    Pod retries stay in Kubernetes (``backoff_limit``, ``backoff_limit_per_index``,
    ``fail_on_exit_codes`` / ``pod_failure_policy``); the task fails when the Job fails, without
    Airflow retries when a ``FailJob`` rule matched. A retry of the task adopts a still running Job
    of the same spec and, with ``resume=True``, runs only the indexes that did not complete.

    :param image: container image (templated).
    :param command: entrypoint (templated).
    :param args: arguments (templated).
    :param env: environment: plain strings, or ``EnvFromSecret`` / ``EnvFromConfigMap`` references (templated).
    :param namespace: namespace of the Job (templated).
    :param completions: number of indexes; more than one makes an Indexed Job.
    :param parallelism: pods at once.
    :param job_template: a Job manifest (dict or YAML path) merged underneath the typed fields (templated).
    :param resume: an Airflow retry runs only the indexes that did not complete before.
    :param deferrable: wait in the triggerer (default) or in the worker.
    :param on_kill: what killing the task does to the Job: ``delete`` (foreground), ``suspend`` or ``keep``.
    :param queue_timeout: fail when the Job waits suspended (e.g. in a Kueue queue) longer than this.
    :param progress_interval: seconds between progress lines in the task log.
    :param stream_logs: stream the logs of every index into the task log.
    :param workspace: the run's storage (:class:`~airflow_provider_kbatch.pipeline.workspace.Workspace`): an
        existing claim, or one claim per DAG run created by the first stage that needs it.
    :param output: name of the stage's output: mounted read-write at ``/kbatch/out/<output>``
        (``KBATCH_OUTPUT_DIR``), recorded in the run ledger when the stage succeeds, and declared as
        the Airflow Asset ``kbatch://<namespace>/<dag id>/<output>`` (through an AssetAlias
        ``kbatch:<dag id>/<output>`` when the namespace is templated). Kept as ``output_name``
        (``output`` is the operator's XComArg).
    :param inputs: upstream output names, or a mapping name -> producing task id; each is mounted
        read-only at ``/kbatch/in/<name>`` (``KBATCH_INPUT_<NAME>_DIR``) after the ledger showed it
        was produced in this run, on the claim mounted now.
    :param produces: the :class:`~airflow_provider_kbatch.pipeline.contracts.Contract` of the output
        (``KBATCH_OUTPUT_CONTRACT``; the runtime helper validates every record against it).
    :param accepts: input name -> accepted contract, checked against the ledger before the Job is
        submitted (incompatible: the task fails, nothing is submitted) and in the pod.
    :param checkpoint: a per-index checkpoint directory that survives pod and Airflow retries
        (``KBATCH_CHECKPOINT_DIR``; ``runtime.checkpoint``).

    Every other parameter is a field of :class:`~airflow_provider_kbatch.spec.stage.StageSpec`
    (``backoff_limit``, ``backoff_limit_per_index``, ``max_failed_indexes``,
    ``fail_on_exit_codes``, ``ignore_disruptions``, ``pod_failure_policy``, ``min_success_ratio``,
    ``success_indexes``, ``success_policy``, ``active_deadline_seconds``,
    ``ttl_seconds_after_finished``, ``priority_class_name``, ``queue_name``, ``resources``,
    ``node_selector``, ``tolerations``, ``service_account_name``, ``pod_security``, ...).
    """

    template_fields: Sequence[str] = (
        "image",
        "command",
        "args",
        "env",
        "namespace",
        "job_template",
        "labels",
        "annotations",
        "job_manifest",
    )
    template_fields_renderers = {"job_manifest": "json", "job_template": "json", "env": "json"}
    # job_manifest is rendered before execute; execute_complete replaces it with the Job that ran
    # (a resumed or adopted attempt runs another index map or generation than the default)
    overwrite_rtif_after_execution = True
    ui_color = "#d6e8fc"

    def __init__(
        self,
        *,
        image: str,
        command: Sequence[str] | None = None,
        args: Sequence[str] | None = None,
        env: Mapping[str, Any] | None = None,
        namespace: str = "default",
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        completions: int = 1,
        job_template: Mapping[str, Any] | str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        resume: bool = True,
        deferrable: bool | None = None,
        on_kill: OnKill = "delete",
        queue_timeout: float | None = None,
        progress_interval: float = 30.0,
        stream_logs: bool = True,
        max_log_streams: int = 16,
        stage_options: Mapping[str, Any] | None = None,
        workspace: Workspace | None = None,
        output: str | None = None,
        inputs: Sequence[str] | Mapping[str, str] | None = None,
        produces: Contract | Mapping[str, Any] | None = None,
        accepts: Mapping[str, Contract | Mapping[str, Any]] | None = None,
        checkpoint: bool = False,
        **kwargs: Any,
    ) -> None:
        spec_fields = set(StageSpec.__dataclass_fields__)
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in spec_fields}
        super().__init__(**kwargs)
        self.workspace = workspace
        self.output_name = output
        self.inputs = inputs
        self.produces = produces
        self.accepts = accepts
        self.checkpoint = checkpoint
        self.image = image
        self.command = command
        self.args = args
        self.env = env
        self.namespace = namespace
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.completions = completions
        self.job_template = job_template
        self.labels = labels
        self.annotations = annotations
        self.resume = resume
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.on_kill_action = on_kill
        self.queue_timeout = queue_timeout
        self.progress_interval = progress_interval
        self.stream_logs = stream_logs
        self.max_log_streams = max_log_streams
        self.stage_options = {**dict(stage_options or {}), **options}
        self.job_manifest: dict[str, Any] | None = None
        self._job: tuple[str, str] | None = None  # (namespace, name) once submitted
        if output is not None and self.has_dag():
            self.outlets = [*self.outlets, output_outlet(namespace, self.dag_id, output)]

    # ---------------------------------------------------------------- pure parts
    def stage_spec(self) -> StageSpec:
        """The typed stage description of this task (after templating)."""
        return StageSpec(
            image=self.image,
            command=tuple(self.command) if self.command is not None else None,
            args=tuple(self.args) if self.args is not None else None,
            env=dict(self.env or {}),
            completions=self.completions,
            job_template=_load_template(self.job_template),
            labels=dict(self.labels or {}),
            annotations=dict(self.annotations or {}),
            **self.stage_options,
        )

    @staticmethod
    def identity(context: Context) -> JobIdentity:
        ti = context["ti"]
        return JobIdentity(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            map_index=ti.map_index if ti.map_index is not None else -1,
            try_number=ti.try_number or 1,
        )

    def wait_settings(self) -> WaitSettings:
        return WaitSettings(
            progress_interval=self.progress_interval,
            stream_logs=self.stream_logs,
            max_log_streams=self.max_log_streams,
            queue_timeout=self.queue_timeout,
        )

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Render, then build the Job manifest so the UI's rendered fields show what runs."""
        super().render_template_fields(context, jinja_env)
        try:
            spec = self.stage_spec()
            validate_stage(spec)
            identity = self.identity(context)
            if self.workspace is not None:  # the claim a first stage would create
                claim = self.workspace.claim_name or claim_name(identity.dag_id, identity.run_id)
                spec = wire_stage(spec, self.workspace, self.pipeline_ports(), identity, claim)
            self.job_manifest = self._build_manifest(spec, identity, identity.try_number)
        except (KbatchSpecError, ValueError) as err:  # execute raises it again, before any I/O
            self.job_manifest = {"invalid": str(err)}

    # ---------------------------------------------------------------- pipeline (workspace.py, handoff.py)
    def pipeline_ports(self) -> Ports:
        """The stage's output, inputs, contracts and checkpoint flag, normalised."""
        return Ports.build(
            output=self.output_name,
            inputs=self.inputs,
            produces=self.produces,
            accepts=self.accepts,
            checkpoint=self.checkpoint,
        )

    def _declared_producers(self, ports: Ports) -> tuple[Ports, dict[str, Contract | None]]:
        """Producing task of each unnamed input (the DAG's task with that output) and the
        contract each producing task declares."""
        tasks = list(self.dag.tasks) if self.has_dag() else []
        by_output = {t.output_name: t for t in tasks if isinstance(t, KbatchJobOperator) and t.output_name}
        inputs = {n: s or (by_output[n].task_id if n in by_output else None) for n, s in ports.inputs.items()}
        declared: dict[str, Contract | None] = {}
        for producer in filter(None, inputs.values()):
            task = self.dag.get_task(producer) if self.has_dag() and self.dag.has_task(producer) else None
            if isinstance(task, KbatchJobOperator):
                declared[producer] = task.pipeline_ports().produces
        return Ports(ports.output, inputs, ports.produces, ports.accepts, ports.checkpoint), declared

    def validate_ports(self, map_index: int = -1) -> Ports:
        """The ports, or ``KbatchSpecError(s)`` naming every mistake (no I/O)."""
        ports = self.pipeline_ports()
        problems = ports_problems(ports, self.workspace, map_index=map_index)
        if problems:
            raise problems[0] if len(problems) == 1 else KbatchSpecErrors(problems)
        if self.workspace is not None:  # clashes with the author's env, volumes, mounts (any claim)
            spec = self.stage_spec()
            probe = JobIdentity(dag_id="dag", task_id="task", run_id="run", map_index=max(map_index, -1))
            wire_stage(spec, self.workspace, ports, probe, "claim")
        return ports

    def _prepare_pipeline(self, context: Context, spec: StageSpec, identity: JobIdentity) -> StageSpec:
        """Check the inputs against the ledger, make sure the workspace exists; the spec wired to
        it (its hash covers claim, sub-paths and contracts)."""
        from airflow_provider_kbatch.engine import storage
        from airflow_provider_kbatch.pipeline.handoff import InputCheckError

        if self.workspace is None:
            return spec
        ports, declared = self._declared_producers(self.validate_ports(identity.map_index))
        logical_date = context.get("logical_date")
        try:
            prepared = storage.prepare_stage(
                self.hook,
                self.namespace,
                identity,
                workspace=self.workspace,
                ports=ports,
                spec=spec,
                declared=declared,
                logical_date=logical_date.isoformat() if logical_date else None,
                log=self.log,
            )
        except (InputCheckError, storage.WorkspaceError) as err:
            raise AirflowFailException(str(err)) from None  # a retry would not change the ledger
        return prepared.spec

    def _stage_succeeded(self, context: Context, identity: JobIdentity, namespace: str) -> None:
        """Bind the recorded output to the workspace and emit its asset event."""
        if not self.output_name or self.workspace is None:
            return
        from airflow_provider_kbatch.engine import storage

        recorded = storage.record_output_location(self.hook, namespace, identity, self.output_name)
        if recorded is None:
            raise AirflowException(
                f"stage {identity.task_id!r} declares output={self.output_name!r} but no pod reported a "
                "finalized manifest (write it with runtime.OutputWriter; every index must commit)"
            )
        self.log.info(
            "output %s: %s (%s bytes, %s records, contract %s)",
            recorded.name,
            recorded.manifest_digest,
            recorded.bytes,
            recorded.records,
            recorded.contract,
        )
        emit_output_event(context, namespace, identity.dag_id, recorded)

    # ---------------------------------------------------------------- execution
    def execute(self, context: Context) -> Any:
        with airflow_errors():  # every mistake, named, before any request; not retried
            spec = self.stage_spec()
            validate_stage(spec)
            identity = self.identity(context)
            self.validate_ports(identity.map_index)
            validate_stage(spec, server_version=self.hook.server_version())
        spec = self._prepare_pipeline(context, spec, identity)
        digest = spec_hash(spec)
        completed = (
            ledger.completed_for_resume(self.hook, self.namespace, identity, digest)
            if self.resume
            else IndexSet.of([])
        )
        existing = self.hook.list_jobs(self.namespace, selector_for(identity))
        plan = plan_submission(
            identity=identity,
            spec_hash=digest,
            completions=spec.completions,
            existing_jobs=existing,
            completed=completed,
            resume=self.resume,
        )
        for stale in plan.stale:
            self.log.warning(
                "deleting job %s/%s: an earlier attempt with another spec", self.namespace, stale
            )
            self.hook.delete_job(self.namespace, stale)
        self.log.info("job %s/%s: %s", self.namespace, plan.job_name, plan.note)
        if plan.action == "done":
            result, _ = finish_stage(
                self.hook,
                self.namespace,
                identity,
                None,
                digest,
                completions=spec.completions,
                log=self.log,
                output_name=self.output_name,
            )
            self._stage_succeeded(context, identity, self.namespace)
            return result
        job = self._submit(spec, identity, plan, digest)
        uid = job["metadata"]["uid"]
        self._job = (self.namespace, plan.job_name)
        ledger.attempt_started(
            self.hook,
            self.namespace,
            identity,
            job=plan.job_name,
            uid=uid,
            spec_hash=digest,
            index_map=plan.index_map,
        )
        if self.deferrable:
            self.defer(
                trigger=KbatchJobTrigger(
                    job_name=plan.job_name,
                    namespace=self.namespace,
                    conn_id=self.conn_id,
                    job_uid=uid,
                    index_map=str(plan.index_map),
                    wait=self.wait_settings().to_dict(),
                    on_kill_action=self.on_kill_action,
                    cluster_context=self.cluster_context,
                    config_file=self.config_file,
                    not_before=time.time() + event_hold_seconds(),
                ),
                method_name="execute_complete",
            )
        event = asyncio.run(self._wait(plan))
        return self.execute_complete(context, event)

    def _build_manifest(
        self, spec: StageSpec, identity: JobIdentity, generation: int, index_map: IndexSet | None = None
    ) -> dict[str, Any]:
        """The Job manifest of one attempt; the same call renders it and creates it."""
        return build_job_manifest(
            spec,
            identity,
            generation=generation,
            namespace=self.namespace,
            index_map=index_map,
            extra_env={"KBATCH_TRY_NUMBER": str(identity.try_number)},
            extra_annotations={GENERATION_ANNOTATION: str(generation)},
        )

    def _submit(self, spec: StageSpec, identity: JobIdentity, plan: Plan, digest: str) -> dict[str, Any]:
        if plan.action == "adopt":
            assert plan.existing is not None
            return plan.existing
        manifest = self._build_manifest(spec, identity, plan.generation, plan.index_map)
        self.job_manifest = manifest
        job, created = submit(self.hook, self.namespace, manifest, digest)
        self.log.info(
            "%s job %s/%s (uid %s)",
            "created" if created else "adopted",
            self.namespace,
            plan.job_name,
            job["metadata"]["uid"],
        )
        return job

    async def _wait(self, plan: Plan) -> dict[str, Any]:
        hook = self.async_hook()
        result = await wait_for_job(
            hook,
            self.namespace,
            plan.job_name,
            index_map=plan.index_map,
            settings=self.wait_settings(),
            log=self.log,
        )
        return result.to_event(self.namespace, plan.job_name)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Decide the task's fate from the trigger's event and the Job as it is now."""
        identity = self.identity(context)
        status = event.get("status")
        name = event["name"]
        self._job = (event["namespace"], name)
        if status == "error":
            raise AirflowException(
                f"waiting for job {event['namespace']}/{name} failed: {event.get('error')}"
            )
        if status == "deleted":
            raise AirflowException(
                f"job {event['namespace']}/{name} was deleted before it finished{': ' + event['message'] if event.get('message') else ''}"
            )
        if status == "queue_timeout":
            self.on_kill()
            raise AirflowException(
                f"job {event['namespace']}/{name} stayed queued (suspended) for {event.get('queued_seconds')}s, "
                f"more than queue_timeout={self.queue_timeout}s; it was {self.on_kill_action}d"
            )
        spec = self.stage_spec()
        job = self.hook.get_job(event["namespace"], name)
        if job is None:
            raise AirflowException(f"job {event['namespace']}/{name} disappeared before its outcome was read")
        self.job_manifest = _as_ran(job)
        result, failure = finish_stage(
            self.hook,
            event["namespace"],
            identity,
            job,
            spec_hash(spec),
            completions=spec.completions,
            log=self.log,
            output_name=self.output_name,
        )
        figures = stage_metrics(job, event, result)
        emit_metrics(figures, succeeded=failure is None, tags={"dag_id": identity.dag_id,
                     "task_id": identity.task_id, "namespace": event["namespace"]})  # fmt: skip
        if failure is None:
            self._stage_succeeded(context, identity, event["namespace"])
            return result
        if failure.retryable:
            raise AirflowException(failure.message)
        raise AirflowFailException(failure.message)

    def on_kill(self) -> None:
        """Task killed, timed out or marked failed/success while running in a worker."""
        if not self._job or self.on_kill_action == "keep":
            return
        namespace, name = self._job
        job = self.hook.get_job(namespace, name)
        if job is None or job_outcome(job).finished:
            # Already finished (e.g. the task was killed while resuming after the trigger fired):
            # keep it, its completed indexes are what the retry resumes from.
            self.log.info("job %s/%s already finished or gone: leaving it", namespace, name)
            return
        if self.on_kill_action == "suspend":
            self.log.info("suspending job %s/%s", namespace, name)
            self.hook.set_suspend(namespace, name, True)
        else:
            self.log.info("deleting job %s/%s and its pods", namespace, name)
            self.hook.delete_job(namespace, name, propagation="Foreground")


def _as_ran(job: dict[str, Any]) -> dict[str, Any]:
    """The Job as the API server holds it (defaults included), without status and bookkeeping."""
    meta = job.get("metadata") or {}
    return {
        "apiVersion": job.get("apiVersion", "batch/v1"),
        "kind": job.get("kind", "Job"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "labels", "annotations") if k in meta},
        "spec": job.get("spec") or {},
    }


class _JobRefOperator(KbatchConnected, BaseOperator):
    """Base of the lifecycle operators: a Job by name, or every Job matching a label selector."""

    template_fields: Sequence[str] = ("job_name", "label_selector", "namespace")

    def __init__(
        self,
        *,
        job_name: str | None = None,
        label_selector: str | None = None,
        namespace: str = "default",
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (job_name is None) == (label_selector is None):
            raise ValueError(f"{type(self).__name__}: pass exactly one of job_name or label_selector")
        self.job_name = job_name
        self.label_selector = label_selector
        self.namespace = namespace
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file

    def job_names(self) -> list[str]:
        # Checked after templating: an empty name or selector must not fall through to a list
        # with an empty selector, which matches (and would delete) every Job in the namespace.
        if self.job_name is not None:
            if not self.job_name.strip():
                raise AirflowFailException(f"{type(self).__name__}: job_name is empty (after templating)")
            return [self.job_name]
        if not (self.label_selector or "").strip():
            raise AirflowFailException(
                f"{type(self).__name__}: label_selector is empty (after templating); it would match every Job"
            )
        return [j["metadata"]["name"] for j in self.hook.list_jobs(self.namespace, self.label_selector)]


class KbatchDeleteJobOperator(_JobRefOperator):
    """Delete Jobs and their pods (foreground propagation by default). Returns the names deleted.

    :param job_name: the Job (templated); or
    :param label_selector: every Job matching it (templated).
    :param propagation: ``Foreground`` (pods first), ``Background`` or ``Orphan``.
    """

    def __init__(
        self, *, propagation: Literal["Foreground", "Background", "Orphan"] = "Foreground", **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.propagation = propagation

    def execute(self, context: Context) -> list[str]:
        names = self.job_names()
        for name in names:
            self.log.info("deleting job %s/%s (%s)", self.namespace, name, self.propagation)
            self.hook.delete_job(self.namespace, name, propagation=self.propagation)
        return names


class KbatchSuspendJobOperator(_JobRefOperator):
    """Suspend Jobs: their running pods are terminated, completed indexes are kept."""

    def execute(self, context: Context) -> list[str]:
        names = self.job_names()
        for name in names:
            self.log.info("suspending job %s/%s", self.namespace, name)
            self.hook.set_suspend(self.namespace, name, True)
        return names


class KbatchResumeJobOperator(_JobRefOperator):
    """Resume suspended Jobs."""

    def execute(self, context: Context) -> list[str]:
        names = self.job_names()
        for name in names:
            self.log.info("resuming job %s/%s", self.namespace, name)
            self.hook.set_suspend(self.namespace, name, False)
        return names
