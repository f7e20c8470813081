"""KbatchJobOperator -- one pipeline stage as one native Kubernetes Job -- and the lifecycle
operators (delete, suspend, resume).

Thin Airflow glue: the arguments become one stage in :mod:`airflow_provider_kbatch.operators.stage`,
the manifest is built and validated by :mod:`airflow_provider_kbatch.spec`, submission decided by
:mod:`airflow_provider_kbatch.engine.submission`, the outcome read by
:mod:`airflow_provider_kbatch.status`, the wait done by :mod:`airflow_provider_kbatch.engine.waiter`,
and every API call made by :mod:`airflow_provider_kbatch.hooks.kbatch`.

Longer than the project's 400 lines on purpose: half of it is the operator's public signature --
some forty keyword-only parameters, each documented with ``:param:`` -- which stays in one class so
IDEs, mypy, the docs and templating see every field (issue: the operator's own fields in its
signature). The lifecycle operators live in :mod:`airflow_provider_kbatch.operators.lifecycle`
and are re-exported here, their public import path.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_kbatch.engine import concurrency, ledger, podpages
from airflow_provider_kbatch.engine.disruption import ensure_budget
from airflow_provider_kbatch.engine.outcome import finish_stage
from airflow_provider_kbatch.engine.results import keeper
from airflow_provider_kbatch.engine.submission import (
    GENERATION_ANNOTATION,
    Plan,
    job_index_map,
    plan_submission,
    remove_superseded,
    submit,
)
from airflow_provider_kbatch.engine.trigger_end import EndFacts, fallback_reasons, job_as_ran
from airflow_provider_kbatch.engine.waiter import WaitSettings, wait_for_job
from airflow_provider_kbatch.glue.assets import emit_output_event
from airflow_provider_kbatch.glue.errors import airflow_errors
from airflow_provider_kbatch.glue.metrics import emit as emit_metrics
from airflow_provider_kbatch.glue.metrics import failure_reasons, live_observer, stage_metrics
from airflow_provider_kbatch.glue.settings import (
    custom_xcom_backend,
    end_in_triggerer,
    event_hold_seconds,
    resolve_deferrable,
)
from airflow_provider_kbatch.glue.tracing import StageTrace, watch_span
from airflow_provider_kbatch.hooks.connected import KbatchConnected
from airflow_provider_kbatch.hooks.connection import task_namespace
from airflow_provider_kbatch.operators import memo_compensation
from airflow_provider_kbatch.operators.links import KbatchIndexesLink, check_links, operator_links
from airflow_provider_kbatch.operators.stage import (
    JOB_PARAMETERS,
    POD_FIELDS,
    Stage,
    errors_of,
    input_names,
    named,
    port_asset,
    spec_arguments,
)
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.pipeline.workspace import (
    Ports,
    Workspace,
    claim_name,
    ports_problems,
    wire_stage,
)
from airflow_provider_kbatch.spec.actions import StageAction
from airflow_provider_kbatch.spec.concurrency import (
    POLL_SECONDS,
    ConcurrencyPolicy,
    concurrency_problems,
    timeout_seconds,
)
from airflow_provider_kbatch.spec.errors import KbatchSpecError, KbatchSpecErrors, ProblemCollector
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL, JobIdentity, selector_for
from airflow_provider_kbatch.spec.stage import (
    DEFAULT_TTL_SECONDS_AFTER_FINISHED,
    CompletionMode,
    EnvValue,
    FailAction,
    PodOptions,
    PodReplacementPolicy,
    Resources,
    StageSpec,
)
from airflow_provider_kbatch.spec.validation import namespace_problem, stage_problems, validate_server_version
from airflow_provider_kbatch.status import job_outcome, slim_pod
from airflow_provider_kbatch.triggers.concurrency import KbatchConcurrencyTrigger
from airflow_provider_kbatch.triggers.job import KbatchJobTrigger
from airflow_provider_kbatch.triggers.task_end import end_task_spec, explain, task_end_events_available

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context


__all__ = [
    "KbatchDeleteJobOperator",
    "KbatchJobOperator",
    "KbatchResumeJobOperator",
    "KbatchSuspendJobOperator",
    "PodOptions",
    "StageAction",
]

log = logging.getLogger(__name__)

OnKill = Literal["delete", "suspend", "keep"]
#: StageSpec fields held under another attribute name
_ATTRIBUTES = {"resources": "container_resources"}


class KbatchJobOperator(KbatchConnected, BaseOperator):
    """Run one stage as one Kubernetes ``batch/v1`` Job and wait for it.

    Pod retries stay in Kubernetes (``backoff_limit``, ``backoff_limit_per_index``,
    ``fail_on_exit_codes`` / ``pod_failure_policy``); the task fails when the Job fails, without
    Airflow retries when a ``FailJob`` rule matched. A retry of the task adopts a still running Job
    of the same spec and, with ``resume=True``, runs only the indexes that did not complete.

    Every argument is checked after templating and before anything is submitted: a mistake fails
    the task without Airflow retries (``KbatchInvalidStage``, an ``AirflowFailException``) with a
    message that names each wrong field and its fix. Templated number and flag fields may render
    to strings (``completions="{{ params.n }}"`` renders ``"6"``, which counts as 6; ``"six"`` is
    reported).

    The container:

    :param image: container image (templated).
    :param command: entrypoint, a list of strings (templated). A single string is an error: use
        ``["sh", "-c", "<shell line>"]`` for a shell line.
    :param args: arguments, a list of strings (templated).
    :param env: environment: plain strings, or ``EnvFromSecret`` / ``EnvFromConfigMap`` /
        ``EnvFromField`` references (templated).
    :param resources: ``{"requests": {...}, "limits": {...}}`` or ``Resources(...)`` (templated;
        held as ``container_resources``: ``resources`` is BaseOperator's).

    Where it runs:

    :param namespace: namespace of the Job, the run ledger and the workspace claim (templated).
        ``None`` (default): the connection's ``namespace`` extra, else ``default`` -- resolved
        when the task runs, like the cncf operators. An invalid name fails before any request.
    :param conn_id: Airflow connection of type ``kubernetes`` (templated).
    :param cluster_context: kubeconfig context (overrides the connection's).
    :param config_file: kubeconfig path (overrides the connection's).

    Fan-out:

    :param completions: number of indexes (templated; default 1); more than one is an Indexed
        fan-out, each pod learns its logical index (``KBATCH_INDEX``).
    :param parallelism: pods at once (templated).
    :param completion_mode: ``Indexed`` (default) or ``NonIndexed`` (templated).

    Pod retries and failures (Kubernetes-side; Airflow retries are the task's ``retries``):

    :param backoff_limit: pod failures the Job tolerates (templated).
    :param backoff_limit_per_index: pod failures tolerated per index (templated).
    :param max_failed_indexes: failed indexes before the Job fails (templated; needs
        ``backoff_limit_per_index``).
    :param fail_on_exit_codes: exit codes that end the Job at once (a ``FailJob`` rule: the task
        fails without Airflow retries) (templated).
    :param fail_on_exit_codes_action: ``FailJob`` (default) or ``FailIndex``.
    :param ignore_disruptions: evictions, preemptions and drains (``DisruptionTarget``) do not
        count as failures; default True unless ``pod_failure_policy`` is given.
    :param pod_failure_policy: a raw ``podFailurePolicy`` (camelCase dict) (templated).
    :param pod_replacement_policy: ``Failed`` or ``TerminatingOrFailed``.

    Success:

    :param min_success_ratio: succeed once this share of the indexes succeeded (templated).
    :param success_indexes: succeed once these indexes succeeded, e.g. ``"0-9,20"`` (templated).
    :param success_policy: a raw ``successPolicy`` (camelCase dict) (templated).

    Lifetime and scheduling:

    :param active_deadline_seconds: the Job's deadline (templated).
    :param ttl_seconds_after_finished: finished Jobs are garbage-collected after this (templated;
        default 86400, ``None`` keeps them).
    :param suspend: create the Job suspended (templated).
    :param priority_class_name: the pods' PriorityClass (templated).
    :param queue_name: Kueue LocalQueue: the Job is created suspended with the queue label (templated).

    Metadata, template and pod:

    :param labels: labels of the Job and its pods (templated).
    :param annotations: annotations of the Job and its pods (templated).
    :param job_template: a Job manifest (dict or YAML path) merged underneath the typed fields
        (templated). Where the Job schema has an object or a list, it must hold one.
    :param pod: the pod-template details (:class:`~airflow_provider_kbatch.spec.stage.PodOptions`:
        node selector, tolerations, service account, volumes and mounts, working dir, container
        name, image pull policy and secrets, env_from, pod security, run_as) (templated: its
        string fields). Problems are named ``pod.<field>``.
    :param stage_options: compatibility: StageSpec fields as a dict (a field also given as a
        parameter or in ``pod`` with another value is an error). Pod fields passed as keywords
        (``volumes=...``) still work too, with a deprecation warning: use ``pod=``.

    Waiting:

    :param resume: an Airflow retry runs only the indexes that did not complete before.
    :param deferrable: wait in the triggerer (True) or in the worker (False). ``None`` (default):
        ``[kbatch] default_deferrable`` (default True). The same rule for every kbatch operator and
        sensor (``glue.settings.resolve_deferrable``).
    :param end_in_triggerer: when the deferred Job succeeds, the trigger finishes the stage (results,
        ledger, metrics) and ends the task itself (``TaskSuccessEvent`` with the XComs) instead of a
        worker resuming it for ``execute_complete`` -- a scheduling round trip (2-3 s) less. Only
        where nothing needs a worker: no outlets (``output=``), no ``cache``, ... (every
        reason: :data:`airflow_provider_kbatch.engine.trigger_end.REASONS`); a failure always resumes
        in a worker. ``None`` (default): ``[kbatch] end_in_triggerer`` (default True).
    :param on_kill: what killing the task does to the Job: ``delete`` (foreground), ``suspend`` or ``keep``.
    :param queue_timeout: fail when the Job waits suspended (e.g. in a Kueue queue) longer than this.
    :param progress_interval: seconds between progress lines in the task log.
    :param stream_logs: stream the logs of every index into the task log.
    :param max_log_streams: at most this many pod log streams at once.

    Pipelines:

    :param workspace: the run's storage (:class:`~airflow_provider_kbatch.pipeline.workspace.Workspace`): an
        existing claim, or one claim per DAG run created by the first stage that needs it.
    :param output: name of the stage's output: mounted read-write at ``/kbatch/out/<output>``
        (``KBATCH_OUTPUT_DIR``), recorded in the run ledger when the stage succeeds, and declared as
        the outlet Asset ``kbatch://<namespace>/<dag id>/<output>`` -- through the AssetAlias
        ``kbatch:<dag id>/<output>`` when the namespace is known only at run time (templated, or
        ``None``: the connection's); the Asset attached to it then names the namespace the stage
        ran in. Kept as ``output_name`` (``output`` is the operator's XComArg).
    :param inputs: upstream output names, or a mapping name -> producing task id; each is mounted
        read-only at ``/kbatch/in/<name>`` (``KBATCH_INPUT_<NAME>_DIR``) after the ledger showed it
        was produced in this run, on the claim mounted now. Each is declared as an inlet (the same
        Asset or AssetAlias as the producer's outlet), so the Asset shows this task as a consumer.
    :param produces: the :class:`~airflow_provider_kbatch.pipeline.contracts.Contract` of the output
        (``KBATCH_OUTPUT_CONTRACT``; the runtime helper validates every record against it).
    :param accepts: input name -> accepted contract, checked against the ledger before the Job is
        submitted (incompatible: the task fails, nothing is submitted) and in the pod.
    :param checkpoint: a per-index checkpoint directory that survives pod and Airflow retries
        (``KBATCH_CHECKPOINT_DIR``; ``runtime.checkpoint``).
    :param links: extra links shown on the task instance, link name -> URL template with the
        URL-quoted fields ``{dag_id}``, ``{run_id}``, ``{task_id}``, ``{map_index}``,
        ``{try_number}`` (a dashboard, a log backend); "Indexes" (the kbatch tab) is always there.
        A malformed entry fails the task before anything is submitted. Not for mapped tasks.

    Compensation and memoization (README "Compensation and memoized stages"):

    :param on_failure: a compensating action run as a one-pod Job after a failed try
        (:class:`~airflow_provider_kbatch.spec.actions.StageAction` or a dict of its fields), with
        ``KBATCH_FAILED_INDEXES`` and ``KBATCH_QUARANTINE_PATH``; ``when="each_try"`` (default) or
        ``"final"``. Independently of it, a failed try's partial output is moved aside to
        ``runs/<run key>/quarantine/<task>/try-<n>`` on the workspace (completed indexes kept when
        resuming) and recorded on the attempt in the ledger.
    :param cache: reuse the output of an earlier succeeded run of this task with the same spec,
        inputs (manifest digests) and ``cache_version`` instead of running a Job; with ``output=``
        it needs a shared ``Workspace(claim_name=...)``.
    :param cache_version: a string in the cache key: change it to miss every earlier entry.

    Disruptions and concurrency across runs:

    :param disruption_budget: a PodDisruptionBudget for the stage's pods, one key:
        ``{"min_available": 2}`` or ``{"max_unavailable": "50%"}`` (int or percentage) (templated).
        Created right after the Job (also an adopted one), owned by it, selecting its pods by the
        Job's uid; compiled to an integer ``minAvailable`` of the pods the Job runs at once (a Job
        has no scale subresource: see :mod:`airflow_provider_kbatch.spec.disruption`). A drain
        then waits (evictions refused with 429) while the budget holds.
    :param concurrency_policy: the stage across runs of the DAG, like a CronJob's
        ``concurrencyPolicy``: ``Allow`` (default), ``Forbid`` (wait -- deferred, no worker slot --
        while another run's Job of this stage is active) or ``Replace`` (delete the other run's
        Job, recorded in that run's ledger; the replaced task fails without retries). See
        :mod:`airflow_provider_kbatch.spec.concurrency`.
    :param concurrency_timeout: ``Forbid`` only: fail (without retries, nothing submitted) after
        waiting this long (timedelta or seconds); ``None`` waits forever.
    """

    template_fields: Sequence[str] = (
        "image",
        "command",
        "args",
        "env",
        "namespace",
        "conn_id",
        "completions",
        "parallelism",
        "completion_mode",
        "backoff_limit",
        "backoff_limit_per_index",
        "max_failed_indexes",
        "fail_on_exit_codes",
        "pod_failure_policy",
        "min_success_ratio",
        "success_indexes",
        "success_policy",
        "active_deadline_seconds",
        "ttl_seconds_after_finished",
        "suspend",
        "priority_class_name",
        "queue_name",
        "labels",
        "annotations",
        "job_template",
        "pod",
        "job_manifest",
        # disruptions and concurrency across runs (engine/disruption.py, engine/concurrency.py)
        "disruption_budget",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "job_manifest": "json",
        "job_template": "json",
        "env": "json",
    }
    # job_manifest is rendered before execute; execute_complete replaces it with the Job that ran
    # (a resumed or adopted attempt runs another index map or generation than the default)
    overwrite_rtif_after_execution = True
    ui_color = "#d6e8fc"
    operator_extra_links: Sequence[BaseOperatorLink] = (KbatchIndexesLink(),)

    def __init__(
        self,
        *,
        image: str,
        command: Sequence[str] | None = None,
        args: Sequence[str] | None = None,
        env: Mapping[str, EnvValue] | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
        namespace: str | None = None,
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        completions: int | str = 1,
        parallelism: int | str | None = None,
        completion_mode: CompletionMode | None = None,
        backoff_limit: int | str | None = None,
        backoff_limit_per_index: int | str | None = None,
        max_failed_indexes: int | str | None = None,
        fail_on_exit_codes: Sequence[int | str] = (),
        fail_on_exit_codes_action: FailAction = "FailJob",
        ignore_disruptions: bool | None = None,
        pod_failure_policy: Mapping[str, Any] | None = None,
        pod_replacement_policy: PodReplacementPolicy | None = None,
        min_success_ratio: float | str | None = None,
        success_indexes: str | None = None,
        success_policy: Mapping[str, Any] | None = None,
        active_deadline_seconds: int | str | None = None,
        ttl_seconds_after_finished: int | str | None = DEFAULT_TTL_SECONDS_AFTER_FINISHED,
        suspend: bool | str = False,
        priority_class_name: str | None = None,
        queue_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        job_template: Mapping[str, Any] | str | None = None,
        pod: PodOptions | None = None,
        stage_options: Mapping[str, Any] | None = None,
        resume: bool = True,
        deferrable: bool | None = None,
        end_in_triggerer: bool | None = None,
        on_kill: OnKill = "delete",
        queue_timeout: float | None = None,
        progress_interval: float = 30.0,
        stream_logs: bool = True,
        max_log_streams: int = 16,
        workspace: Workspace | None = None,
        output: str | None = None,
        inputs: Sequence[str] | Mapping[str, str] | None = None,
        produces: Contract | Mapping[str, Any] | None = None,
        accepts: Mapping[str, Contract | Mapping[str, Any]] | None = None,
        checkpoint: bool = False,
        links: Mapping[str, str] | None = None,
        # compensation and memoization (engine/compensation.py, engine/memo.py)
        on_failure: StageAction | Mapping[str, Any] | None = None,
        cache: bool = False,
        cache_version: str | None = None,
        # disruptions and concurrency across runs (engine/disruption.py, engine/concurrency.py)
        disruption_budget: Mapping[str, Any] | None = None,
        concurrency_policy: ConcurrencyPolicy = "Allow",
        concurrency_timeout: datetime.timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        legacy = {k: kwargs.pop(k) for k in list(kwargs) if k in POD_FIELDS}
        if legacy:
            warnings.warn(
                f"KbatchJobOperator: pass {', '.join(sorted(legacy))} as pod=PodOptions(...) "
                "(keywords of pod fields are kept for compatibility)",
                AirflowProviderDeprecationWarning,
                stacklevel=2,
            )
        super().__init__(**kwargs)
        self.image = image
        self.command = command
        self.args = args
        self.env = env
        # not ``self.resources``: BaseOperator owns that name (Airflow's task resources); rendered
        # with the template fields all the same (``_do_render_template_fields``)
        self.container_resources = resources
        self.namespace = namespace
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.completions = completions
        self.parallelism = parallelism
        self.completion_mode = completion_mode
        self.backoff_limit = backoff_limit
        self.backoff_limit_per_index = backoff_limit_per_index
        self.max_failed_indexes = max_failed_indexes
        self.fail_on_exit_codes = fail_on_exit_codes
        self.fail_on_exit_codes_action = fail_on_exit_codes_action
        self.ignore_disruptions = ignore_disruptions
        self.pod_failure_policy = pod_failure_policy
        self.pod_replacement_policy = pod_replacement_policy
        self.min_success_ratio = min_success_ratio
        self.success_indexes = success_indexes
        self.success_policy = success_policy
        self.active_deadline_seconds = active_deadline_seconds
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.suspend = suspend
        self.priority_class_name = priority_class_name
        self.queue_name = queue_name
        self.labels = labels
        self.annotations = annotations
        self.job_template = job_template
        self.pod = pod
        self.stage_options = stage_options
        self.legacy_pod_options = legacy
        self.resume = resume
        self.deferrable = resolve_deferrable(deferrable)
        self.end_in_triggerer = end_in_triggerer
        self.on_kill_action = on_kill
        self.queue_timeout = queue_timeout
        self.progress_interval = progress_interval
        self.stream_logs = stream_logs
        self.max_log_streams = max_log_streams
        self.workspace = workspace
        self.output_name = output
        self.inputs = inputs
        self.produces = produces
        self.accepts = accepts
        self.checkpoint = checkpoint
        self.links = links
        if links:  # an instance's own links (Airflow serializes them by name and XCom key)
            self.operator_extra_links = operator_links(links)
        self.on_failure = on_failure
        self.cache = cache
        self.cache_version = cache_version
        self._resolved_inputs: dict[str, str] = {}  # input name -> manifest digest, this try
        # disruptions and concurrency across runs (engine/disruption.py, engine/concurrency.py)
        self.disruption_budget = disruption_budget
        self.concurrency_policy = concurrency_policy
        self.concurrency_timeout = concurrency_timeout
        self._concurrency_deadline: float | None = None  # carried across Forbid deferrals
        self.job_manifest: dict[str, Any] | None = None
        self._job: tuple[str, str] | None = None  # (namespace, name) once submitted
        self._stage: Stage | None = None  # this try's stage, built once (render or execute)
        self._namespace: str | None = None  # resolved once
        self._manifest_memo: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        if self.has_dag():
            if output is not None:
                self.outlets = [*self.outlets, port_asset(namespace, self.dag_id, output)]
            self.inlets = [
                *self.inlets,
                *(port_asset(namespace, self.dag_id, n) for n in input_names(inputs)),
            ]

    # ---------------------------------------------------------------- the stage (operators/stage.py)
    def _spec_arguments(self) -> tuple[dict[str, Any], frozenset[str]]:
        return spec_arguments(
            {name: getattr(self, _ATTRIBUTES.get(name, name)) for name in JOB_PARAMETERS},
            pod=self.pod,
            stage_options=self.stage_options,
            legacy=self.legacy_pod_options,
        )

    def stage_spec(self) -> StageSpec:
        """The typed stage description of this task (after templating), not validated yet."""
        return StageSpec(**self._spec_arguments()[0])

    def _build_stage(self, identity: JobIdentity) -> Stage:
        """Build, validate and wire the stage: every mistake in the arguments, named, no I/O."""
        problems = ProblemCollector()
        spec = None
        try:
            arguments, from_pod = self._spec_arguments()
            spec = StageSpec(**arguments)
        except KbatchSpecError as err:
            problems.extend(errors_of(err))
        else:
            problems.extend(named(stage_problems(spec), from_pod))
        problems.extend(self._compensation_and_cache_problems())
        problems.extend(concurrency_problems(self.concurrency_policy, self.concurrency_timeout))
        if self.end_in_triggerer is not None and not isinstance(self.end_in_triggerer, bool):
            problems.add(
                "end_in_triggerer",
                f"must be True, False or None, got {self.end_in_triggerer!r}",
                "pass a bool, or None for [kbatch] end_in_triggerer",
            )
        if self.namespace is not None:  # the connection's is checked when it is read
            problem = namespace_problem(self.namespace)
            if problem is not None:
                problems.add(problem.field, problem.problem, problem.fix)
        problems.raise_if_any()
        assert spec is not None
        ports = self.pipeline_ports()
        port_problems = ports_problems(ports, self.workspace, map_index=identity.map_index)
        if port_problems:
            raise port_problems[0] if len(port_problems) == 1 else KbatchSpecErrors(port_problems)
        shown = spec
        if self.workspace is not None:  # the claim a first stage would create; clashes raise here
            claim = self.workspace.claim_name or claim_name(identity.dag_id, identity.run_id)
            shown = wire_stage(spec, self.workspace, ports, identity, claim)
        return Stage(identity=identity, spec=spec, ports=ports, shown=shown)

    def stage(self, context: Context) -> Stage:
        """This try's stage, built from the rendered arguments once (raises ``KbatchSpecError``)."""
        identity = self.identity(context)
        if self._stage is None or self._stage.identity != identity:
            self._stage = self._build_stage(identity)
        return self._stage

    def resolved_namespace(self) -> str:
        """``namespace``, else the connection's ``namespace`` extra, else ``default``; checked."""
        if self._namespace is None:
            self._namespace = task_namespace(
                self.namespace, lambda: self.hook.get_namespace(), conn_id=self.conn_id
            )
        return self._namespace

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

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Any,
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        """Render, then the pod options, then build the stage and its Job manifest so the UI's
        rendered fields show what runs. (This hook, not ``render_template_fields``: a mapped
        task's expansion calls only this one.)"""
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is not self:
            return
        self.container_resources = self.render_template(self.container_resources, context, jinja_env)
        if isinstance(self.pod, PodOptions):
            self.pod = self.pod.rendered(lambda value: self.render_template(value, context, jinja_env))
        self._stage = None
        self._namespace = None
        try:
            stage = self.stage(context)
            self.job_manifest = self._manifest(
                stage.shown, self.resolved_namespace(), stage.identity, stage.identity.try_number
            )
        except Exception as err:  # execute raises it again, before any request, and decides
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

    def _prepare_pipeline(self, context: Context, stage: Stage, namespace: str) -> StageSpec:
        """Check the inputs against the ledger, make sure the workspace exists; the spec wired to
        it (its hash covers claim, sub-paths and contracts)."""
        from airflow_provider_kbatch.engine import storage
        from airflow_provider_kbatch.pipeline.handoff import InputCheckError

        if self.workspace is None:
            return stage.spec
        ports, declared = self._declared_producers(stage.ports)
        logical_date = context.get("logical_date")
        try:
            prepared = storage.prepare_stage(
                self.hook,
                namespace,
                stage.identity,
                workspace=self.workspace,
                ports=ports,
                spec=stage.spec,
                declared=declared,
                logical_date=logical_date.isoformat() if logical_date else None,
                log=self.log,
            )
        except (InputCheckError, storage.WorkspaceError) as err:
            raise AirflowFailException(str(err)) from None  # a retry would not change the ledger
        self._resolved_inputs = {n: i.manifest_digest for n, i in prepared.inputs.items()}
        return prepared.spec

    def _stage_succeeded(
        self, context: Context, identity: JobIdentity, namespace: str, cache_key: str | None = None
    ) -> None:
        """Bind the recorded output to the workspace and emit its asset event; remember it in
        the cache index when the stage is memoized."""
        if cache_key is not None:
            with airflow_errors():
                self._cache_store(context, identity, namespace, cache_key)
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
        emit_output_event(context, namespace, identity, recorded, hook=self.hook, log=self.log)

    # ---------------------------------------------------------------- execution
    # ---------------------------------------------------------------- traces (glue/tracing.py)
    _trace: StageTrace | None = None

    def _stage_trace(self, trace: dict[str, Any] | None = None) -> StageTrace:
        """The stage's trace: carried in the deferral's kwargs, else this object's, else off."""
        if trace is not None or self._trace is None:
            self._trace = StageTrace.from_dict(trace)
        return self._trace

    def _attempt_pods(self, namespace: str, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods of the Job (for the failure reasons' metric and the attempt spans), read a page
        at a time and slimmed; only the failed ones unless the spans need every pod."""
        every = self._stage_trace().enabled
        selector = f"{CONTROLLER_UID_LABEL}={job['metadata']['uid']}"
        try:
            return [
                slim_pod(pod)
                for page in podpages.pages(self.hook, namespace, selector)
                for pod in page
                if every or (pod.get("status") or {}).get("phase") == "Failed"
            ]
        except Exception as err:  # best effort: metrics and spans never fail a task
            self.log.debug("no pods for metrics and traces: %s", err)
            return []

    def _end_trace(
        self,
        namespace: str,
        job: dict[str, Any] | None,
        error: Any = None,
        pods: list[dict[str, Any]] | None = None,
    ) -> None:
        stage_trace = self._stage_trace()
        if not stage_trace.enabled or stage_trace.ended:
            return
        attributes = {
            "kbatch.namespace": namespace,
            "kbatch.job": str((job or {}).get("metadata", {}).get("name")),
        }
        stage_trace.end(self.task_id, job=job, pods=pods, index_map=job_index_map(job) if job else None,
                        error=error, attributes=attributes)  # fmt: skip

    # ---------------------------------------------------------------- execution
    def execute(self, context: Context) -> Any:
        self._trace = StageTrace.begin(context)
        try:
            return self._execute(context)
        except TaskDeferred:
            raise
        except BaseException as err:  # the stage span ends with the error that failed the task
            self._end_trace(self._namespace or "", None, err)
            raise

    @airflow_errors()  # a final kbatch error (a foreign Job holding our name, ...) is not retried
    def _execute(self, context: Context) -> Any:
        stage_trace = self._stage_trace()
        with airflow_errors(), stage_trace.step("validate"):  # every mistake, named, before any request
            stage = self.stage(context)
            namespace = self.resolved_namespace()
            check_links(self.links)
            validate_server_version(stage.spec, self.hook.server_version())
        identity = stage.identity
        stage_trace.start("submit")
        spec = self._prepare_pipeline(context, stage, namespace)
        digest = spec_hash(spec)
        cache_key = self._cache_key(stage) if self.cache else None
        if cache_key is not None:
            hit = self._cache_hit(context, stage, namespace, digest, cache_key)
            if hit is not None:
                return hit
        completed = (
            ledger.completed_for_resume(self.hook, namespace, identity, digest)
            if self.resume
            else IndexSet.of([])
        )
        existing = self.hook.list_jobs(namespace, selector_for(identity))
        plan = plan_submission(
            identity=identity,
            spec_hash=digest,
            completions=spec.completions,
            existing_jobs=existing,
            completed=completed,
            resume=self.resume,
        )
        for stale in plan.stale:
            self.log.warning("deleting job %s/%s: an earlier attempt with another spec", namespace, stale)
            self.hook.delete_job(namespace, stale)
        self.log.info("job %s/%s: %s", namespace, plan.job_name, plan.note)
        if plan.action == "done":
            result, _ = finish_stage(
                self.hook,
                namespace,
                identity,
                None,
                completions=spec.completions,
                log=self.log,
                output_name=self.output_name,
            )
            self._stage_succeeded(context, identity, namespace, cache_key)
            self._end_trace(namespace, None)
            return result
        if plan.action == "create":
            self._concurrency_gate(namespace, identity, plan)  # Forbid may wait (defer) here
        job = self._submit(spec, namespace, identity, plan, digest)
        if plan.action == "create" and self.concurrency_policy == "Replace":
            self._unless_replaced(namespace, identity, job)
        ensure_budget(self.hook, namespace, job, spec.disruption_budget, log=self.log)
        # the rendered field shows the Job as the API server holds it; a stage that ends in the
        # triggerer keeps it (the trigger checks the Job did not change meanwhile)
        self.job_manifest = self._publish_manifest(
            context, job, "was submitted" if plan.action == "create" else "was adopted"
        )
        uid = job["metadata"]["uid"]
        self._job = (namespace, plan.job_name)
        ledger.attempt_started(
            self.hook,
            namespace,
            identity,
            job=plan.job_name,
            uid=uid,
            spec_hash=digest,
            index_map=plan.index_map,
        )
        stage_trace.stop("submit")
        # what execute_complete needs of the stage, so it does not rebuild it (plain JSON)
        outcome: dict[str, Any] = {"completions": spec.completions}
        if cache_key is not None:
            outcome["cache_key"] = cache_key
        if stage_trace.enabled:
            outcome["trace"] = stage_trace.to_dict()
        if self.deferrable:
            self.defer(
                trigger=KbatchJobTrigger(
                    job_name=plan.job_name,
                    namespace=namespace,
                    conn_id=self.conn_id,
                    job_uid=uid,
                    index_map=str(plan.index_map),
                    wait=self.wait_settings().to_dict(),
                    on_kill_action=self.on_kill_action,
                    cluster_context=self.cluster_context,
                    config_file=self.config_file,
                    not_before=time.time() + event_hold_seconds(),
                    traceparent=stage_trace.traceparent,
                    end_task=self._end_task(identity, spec.completions, job, stage_trace.to_dict()),
                ),
                method_name="execute_complete",
                kwargs=outcome,
            )
        event = asyncio.run(self._wait(namespace, plan))
        return self.execute_complete(context, event, **outcome)

    # ---------------------------------------------------------------- ending in the triggerer
    def end_in_triggerer_facts(self) -> EndFacts:
        """What this task tells of :func:`~airflow_provider_kbatch.engine.trigger_end.fallback_reasons`
        at the deferral (the Job's outcome is known only in the trigger)."""
        enabled = end_in_triggerer() if self.end_in_triggerer is None else bool(self.end_in_triggerer)
        hooks = (
            bool(self.on_execute_callback)
            or self._pre_execute_hook is not None
            or self._post_execute_hook is not None
            or type(self).pre_execute is not BaseOperator.pre_execute
            or type(self).post_execute is not BaseOperator.post_execute
        )
        return EndFacts(
            enabled=enabled,
            airflow_can_end_task=task_end_events_available(),
            outlets=bool(self.outlets) or self.output_name is not None,
            cache=bool(self.cache),
            mapped_downstream=self.has_dag() and next(iter(self.iter_mapped_dependants()), None) is not None,
            task_hooks=hooks,
            execute_complete_overridden=type(self).execute_complete is not KbatchJobOperator.execute_complete
            or type(self)._complete is not KbatchJobOperator._complete,
            custom_xcom_backend=custom_xcom_backend(),
        )

    def _end_task(
        self, identity: JobIdentity, completions: int, job: dict[str, Any], trace: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The trigger's ``end_task`` when the task may end in the triggerer, else None (logged)."""
        reasons = fallback_reasons(self.end_in_triggerer_facts())
        if reasons:
            self.log.info("when the Job ends, the task resumes in a worker: %s", explain(reasons))
            return None
        self.log.info("when the Job succeeds, the task ends in the triggerer (end_in_triggerer)")
        return end_task_spec(
            identity,
            completions=completions,
            job=job,
            xcom_return=bool(self.do_xcom_push),
            multiple_outputs=bool(self.multiple_outputs),
            trace=trace,
        )

    # ---------------------------------------------------------------- concurrency across runs (issue 11)
    def _concurrency_gate(self, namespace: str, identity: JobIdentity, plan: Plan) -> None:
        """``Replace``: delete the other runs' active Jobs of this stage. ``Forbid``: take the
        stage's lock, or wait (deferred: no worker slot) while another run's Job is active."""
        if self.concurrency_policy == "Replace":
            concurrency.replace_others(self.hook, namespace, identity, plan.job_name, log=self.log)
            return
        if self.concurrency_policy != "Forbid":
            return
        limit = timeout_seconds(self.concurrency_timeout)
        deadline = self._concurrency_deadline
        if deadline is None and limit is not None:
            deadline = time.time() + limit
        while (blocker := concurrency.try_forbid(self.hook, namespace, identity, plan.job_name)) is not None:
            self.log.info("waiting for %s (concurrency_policy=Forbid)", blocker.describe())
            if deadline is not None and time.time() >= deadline:
                raise concurrency.ConcurrencyTimeout(
                    f"stage {identity.task_id!r} of run {identity.run_id} waited more than "
                    f"concurrency_timeout={limit}s for {blocker.describe()} (concurrency_policy=Forbid); "
                    "nothing was submitted"
                )
            if self.deferrable:
                self.defer(
                    trigger=KbatchConcurrencyTrigger(
                        namespace=namespace,
                        dag_id=identity.dag_id,
                        task_id=identity.task_id,
                        run_id=identity.run_id,
                        map_index=identity.map_index,
                        conn_id=self.conn_id,
                        cluster_context=self.cluster_context,
                        config_file=self.config_file,
                        deadline=deadline,
                        not_before=time.time() + event_hold_seconds(),
                    ),
                    method_name="execute_after_concurrency",
                    kwargs={"deadline": deadline},
                )
            time.sleep(POLL_SECONDS)

    def _unless_replaced(self, namespace: str, identity: JobIdentity, job: dict[str, Any]) -> None:
        """``Replace``, after the create: a newer run that took the stage's lock meanwhile may not
        have seen this Job; then this run deletes it and fails (recorded in its ledger)."""
        newer = concurrency.still_holder(self.hook, namespace, identity)
        if newer is None:
            return
        reason = concurrency.record_replaced(self.hook, namespace, job, by_run=newer.run_id)
        self.hook.delete_job(namespace, job["metadata"]["name"], propagation="Background")
        raise concurrency.Replaced(reason)

    @airflow_errors()
    def execute_after_concurrency(
        self, context: Context, event: dict[str, Any], deadline: float | None = None, **_: Any
    ) -> Any:
        """Back from :class:`KbatchConcurrencyTrigger`: submit now (taking the lock), wait again if
        another waiting run took it first, or fail at ``concurrency_timeout``."""
        status = event.get("status")
        if status == "timeout":
            raise concurrency.ConcurrencyTimeout(
                f"stage {self.task_id!r} waited more than concurrency_timeout="
                f"{timeout_seconds(self.concurrency_timeout)}s for run {event.get('blocked_by_run')}'s "
                f"Job {event.get('blocked_by_job')} (concurrency_policy=Forbid); nothing was submitted"
            )
        if status == "error":
            raise AirflowException(f"waiting for the other runs' jobs failed: {event.get('error')}")
        if event.get("blocked_by_run"):
            self.log.info(
                "run %s's Job %s is no longer active: submitting (concurrency_policy=Forbid)",
                event["blocked_by_run"],
                event.get("blocked_by_job"),
            )
        self._concurrency_deadline = deadline
        return self.execute(context)

    def _manifest(
        self,
        spec: StageSpec,
        namespace: str,
        identity: JobIdentity,
        generation: int,
        index_map: IndexSet | None = None,
    ) -> dict[str, Any]:
        """The Job manifest of one attempt; the same call renders it and creates it (built once
        when the attempt is the one rendered)."""
        full = spec.is_indexed and index_map is not None and index_map == IndexSet.full(spec.completions)
        key = (namespace, identity, generation, None if full or index_map is None else str(index_map))
        if self._manifest_memo is not None and self._manifest_memo[0] == (*key, spec):
            return self._manifest_memo[1]
        manifest = build_job_manifest(
            spec,
            identity,
            generation=generation,
            namespace=namespace,
            index_map=index_map,
            extra_env={"KBATCH_TRY_NUMBER": str(identity.try_number)},
            extra_annotations={GENERATION_ANNOTATION: str(generation)},
        )
        self._manifest_memo = ((*key, spec), manifest)
        return manifest

    def _submit(
        self, spec: StageSpec, namespace: str, identity: JobIdentity, plan: Plan, digest: str
    ) -> dict[str, Any]:
        if plan.action == "adopt":
            assert plan.existing is not None
            return plan.existing
        manifest = self._stage_trace().manifest(
            self._manifest(spec, namespace, identity, plan.generation, plan.index_map)
        )
        self.job_manifest = manifest
        job, created = submit(self.hook, namespace, manifest, digest)
        self.log.info(
            "%s job %s/%s (uid %s)",
            "created" if created else "adopted",
            namespace,
            plan.job_name,
            job["metadata"]["uid"],
        )
        return job

    async def _wait(self, namespace: str, plan: Plan) -> dict[str, Any]:
        hook = self.async_hook()
        with watch_span(self._stage_trace().traceparent, where="worker"):
            result = await wait_for_job(
                hook,
                namespace,
                plan.job_name,
                index_map=plan.index_map,
                settings=self.wait_settings(),
                log=self.log,
                on_progress=live_observer(
                    {"dag_id": self.dag_id, "task_id": self.task_id, "namespace": namespace}
                ),
                keep=keeper(self.hook, namespace, self.log),
            )
        return result.to_event(namespace, plan.job_name)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any],
        completions: int | None = None,
        cache_key: str | None = None,
        trace: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        """Decide the task's fate from the trigger's event and the Job as it is now.

        ``completions`` comes from ``execute`` (the deferral's kwargs); a task deferred by an
        older kbatch resumes without it, and the stage is then rebuilt once for it. ``trace``:
        the stage's trace (:class:`~airflow_provider_kbatch.glue.tracing.StageTrace`), when
        tracing is on. Other kwargs of other versions are accepted and ignored."""
        self._stage_trace(trace)
        try:
            return self._complete(context, event, completions, cache_key)
        except BaseException as err:  # the stage span ends with the error that failed the task
            self._end_trace(str(event.get("namespace") or ""), None, err)
            raise

    @airflow_errors()
    def _complete(
        self, context: Context, event: dict[str, Any], completions: int | None, cache_key: str | None
    ) -> Any:
        identity = self.identity(context)
        status = event.get("status")
        name = event["name"]
        self._job = (event["namespace"], name)
        if status == "error":
            raise AirflowException(
                f"waiting for job {event['namespace']}/{name} failed: {event.get('error')}"
            )
        if status == "deleted":
            reason = concurrency.replaced_reason(self.hook, event["namespace"], identity, name)
            if reason is not None:  # a newer run replaced it (concurrency_policy="Replace"): final
                raise concurrency.Replaced(reason)
            raise AirflowException(
                f"job {event['namespace']}/{name} was deleted before it finished{': ' + event['message'] if event.get('message') else ''}"
            )
        if status == "queue_timeout":
            self.on_kill()
            raise AirflowException(
                f"job {event['namespace']}/{name} stayed queued (suspended) for {event.get('queued_seconds')}s, "
                f"more than queue_timeout={self.queue_timeout}s; it was {self.on_kill_action}d"
            )
        job = self.hook.get_job(event["namespace"], name)
        if job is None:
            raise AirflowException(f"job {event['namespace']}/{name} disappeared before its outcome was read")
        if completions is None:
            with airflow_errors():
                completions = self.stage(context).spec.completions
        self.job_manifest = self._publish_manifest(context, job, "ran")
        self._stage_trace().start("results")
        result, failure = finish_stage(
            self.hook,
            event["namespace"],
            identity,
            job,
            completions=completions,
            log=self.log,
            output_name=self.output_name,
        )
        pods = self._attempt_pods(event["namespace"], job)
        figures = stage_metrics(job, event, result)
        emit_metrics(figures, succeeded=failure is None, tags={"dag_id": identity.dag_id, "task_id": identity.task_id,
                     "namespace": event["namespace"]}, reasons=failure_reasons(pods))  # fmt: skip
        if failure is None:
            if self.cache and cache_key is None:
                cache_key = memo_compensation.cache_key_again(self, context, event["namespace"])
            self._stage_succeeded(context, identity, event["namespace"], cache_key)
            # earlier attempts whose indexes the ledger holds are no longer needed (kubectl would
            # show a Failed Job beside the Complete one)
            remove_superseded(self.hook, event["namespace"], identity, job, log=self.log)
            self._stage_trace().stop("results")
            self._end_trace(event["namespace"], job, pods=pods)
            return result
        self._stage_trace().stop("results")
        self._end_trace(event["namespace"], job, failure.message.splitlines()[0], pods)
        self._compensate(context, identity, event["namespace"], job, result, failure.retryable)
        if failure.retryable:
            raise AirflowException(failure.message)
        raise AirflowFailException(failure.message)

    # ---------------------------------------------------------------- compensation and memoization
    # (operators/memo_compensation.py)
    def _compensation_and_cache_problems(self) -> list[KbatchSpecError]:
        return memo_compensation.option_problems(self)

    def _compensate(
        self,
        context: Context,
        identity: JobIdentity,
        namespace: str,
        job: dict[str, Any],
        result: dict[str, Any],
        retryable: bool,
    ) -> None:
        memo_compensation.compensate_failed_try(self, context, identity, namespace, job, result, retryable)

    def _cache_key(self, stage: Stage) -> str:
        return memo_compensation.cache_key_of(self, stage)

    def _cache_hit(
        self, context: Context, stage: Stage, namespace: str, digest: str, key: str
    ) -> dict[str, Any] | None:
        return memo_compensation.cache_hit(self, context, stage, namespace, digest, key)

    def _cache_store(self, context: Context, identity: JobIdentity, namespace: str, key: str) -> None:
        memo_compensation.cache_store(self, context, identity, namespace, key)

    def _publish_manifest(self, context: Context, job: dict[str, Any], how: str) -> dict[str, Any]:
        """The whole Job, where a person finds it at default settings: the task log (YAML) and the
        XCom ``job_manifest``. Rendered Templates cuts any field at ``[core]
        max_templated_field_length`` (4096 characters by default; a stage with a workspace is
        longer). Secrets are references in a manifest, never values."""
        import yaml

        manifest = job_as_ran(job)
        meta = manifest["metadata"]
        self.log.info(
            "the Job %s/%s as it %s (also the XCom job_manifest):\n%s",
            meta.get("namespace"),
            meta.get("name"),
            how,
            yaml.safe_dump(manifest, sort_keys=False, width=110),
        )
        context["ti"].xcom_push(key="job_manifest", value=manifest)
        return manifest

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


# the lifecycle operators live in operators/lifecycle.py; this is their public import path
from airflow_provider_kbatch.operators.lifecycle import (  # noqa: E402
    KbatchDeleteJobOperator,
    KbatchResumeJobOperator,
    KbatchSuspendJobOperator,
)

__all__ = [
    "KbatchDeleteJobOperator",
    "KbatchJobOperator",
    "KbatchResumeJobOperator",
    "KbatchSuspendJobOperator",
    "PodOptions",
    "StageAction",
]
