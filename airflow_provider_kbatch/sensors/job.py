"""KbatchJobSensor: wait for an existing Job (by name or label selector) to finish.

Poke and reschedule modes read the Job once per poke; ``deferrable=True`` hands the wait to
:class:`~airflow_provider_kbatch.triggers.job.KbatchJobTrigger` (a watch, not a poll), one
unfinished Job at a time, and -- while nothing matches yet -- looks again every
``poke_interval`` from the triggerer too. The sensor does not own the Job: killing the sensor
never deletes it (the trigger's ``on_kill_action`` is ``"keep"``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_kbatch.glue.errors import airflow_errors
from airflow_provider_kbatch.glue.settings import resolve_deferrable
from airflow_provider_kbatch.hooks.connected import KbatchConnected
from airflow_provider_kbatch.hooks.connection import task_namespace
from airflow_provider_kbatch.status import job_outcome
from airflow_provider_kbatch.triggers.job import KbatchJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class KbatchJobSensor(KbatchConnected, BaseSensorOperator):
    """Succeed when the Job(s) completed; fail when one failed.

    :param job_name: the Job to wait for (templated); or
    :param label_selector: every Job matching it must complete (templated); at least one must exist.
    :param namespace: namespace (templated); ``None`` (default): the connection's ``namespace``
        extra, else ``default``. An invalid name fails before any request, without retries.
    :param deferrable: wait in the triggerer: a watch of each unfinished Job in turn; while no Job
        matches yet, a timer of ``poke_interval``. ``timeout`` bounds the whole wait. ``None``
        (default): the rule of every kbatch class -- an explicit ``mode=`` (``"poke"``,
        ``"reschedule"``) waits that way, else ``[kbatch] default_deferrable`` (default True).
    """

    template_fields: Sequence[str] = ("job_name", "label_selector", "namespace")

    def __init__(
        self,
        *,
        job_name: str | None = None,
        label_selector: str | None = None,
        namespace: str | None = None,
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        mode_given = "mode" in kwargs
        super().__init__(**kwargs)
        if (job_name is None) == (label_selector is None):
            raise ValueError("KbatchJobSensor: pass exactly one of job_name or label_selector")
        self.job_name = job_name
        self.label_selector = label_selector
        self.namespace = namespace
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.deferrable = resolve_deferrable(deferrable, mode_given=mode_given)
        self._namespace: str | None = None

    def resolved_namespace(self) -> str:
        """``namespace``, else the connection's ``namespace`` extra, else ``default``; checked
        (``KbatchInvalidStage``: fails without retries, before any request)."""
        if self._namespace is None:
            with airflow_errors():
                self._namespace = task_namespace(
                    self.namespace, lambda: self.hook.get_namespace(), conn_id=self.conn_id
                )
        return self._namespace

    def _jobs(self) -> list[dict[str, Any]]:
        # Checked after templating: an empty name or selector would otherwise match every Job
        # in the namespace (a list with an empty selector).
        if self.job_name is not None:
            if not self.job_name.strip():
                raise AirflowFailException("KbatchJobSensor: job_name is empty (after templating)")
            job = self.hook.get_job(self.resolved_namespace(), self.job_name)
            return [job] if job else []
        if not (self.label_selector or "").strip():
            raise AirflowFailException(
                "KbatchJobSensor: label_selector is empty (after templating); it would match every Job"
            )
        return self.hook.list_jobs(self.resolved_namespace(), self.label_selector)

    def _unfinished(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The Jobs still running; raises when one failed (FailJob: without Airflow retries)."""
        unfinished = []
        for job in jobs:
            name = job["metadata"]["name"]
            outcome = job_outcome(job)
            if outcome.finished and not outcome.succeeded:
                message = (
                    f"job {self.resolved_namespace()}/{name} failed: {outcome.reason}: {outcome.message}"
                )
                raise AirflowException(message) if outcome.retryable else AirflowFailException(message)
            if not outcome.finished:
                self.log.info("job %s/%s not finished yet", self.resolved_namespace(), name)
                unfinished.append(job)
        return unfinished

    def poke(self, context: Context) -> bool:
        jobs = self._jobs()
        if not jobs:
            self.log.info(
                "no job %s in %s yet", self.job_name or self.label_selector, self.resolved_namespace()
            )
            return False
        return not self._unfinished(jobs)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        try:
            return self._check_or_defer(None)
        except AirflowException as err:  # soft_fail / never_fail, as resume_execution applies them later
            if self.soft_fail or getattr(self, "never_fail", False):
                raise AirflowSkipException(f"skipping (soft_fail/never_fail): {err}") from err
            raise

    def _check_or_defer(self, deadline: float | None) -> None:
        """Deferrable mode: done, or defer on the next unfinished Job (or a timer while none exists).

        ``deadline`` (epoch seconds) travels through the deferrals so ``timeout`` bounds the
        whole wait, not each Job's.
        """
        now = time.time()
        deadline = now + self.timeout if deadline is None else deadline
        jobs = self._jobs()
        unfinished = self._unfinished(jobs)
        if jobs and not unfinished:
            self.log.info(
                "job(s) %s in %s completed", self.job_name or self.label_selector, self.resolved_namespace()
            )
            return None
        remaining = deadline - now
        if remaining <= 0:
            raise AirflowSensorTimeout(
                f"KbatchJobSensor timed out after {self.timeout}s waiting for "
                f"{self.job_name or self.label_selector} in {self.resolved_namespace()}"
            )
        # A trigger event within seconds of the deferral can get the task failed by Airflow 3.3
        # (apache/airflow#72716): the operator's hold applies to the sensor's deferrals too.
        from airflow_provider_kbatch.glue.settings import event_hold_seconds

        hold = event_hold_seconds()
        if not jobs:
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            delay = max(min(float(self.poke_interval), remaining), hold)
            self.log.info(
                "no job %s in %s yet; looking again in %ss",
                self.job_name or self.label_selector,
                self.resolved_namespace(),
                delay,
            )
            self.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=delay)),
                method_name="resume_wait",
                kwargs={"deadline": deadline},
            )
        job = unfinished[0]
        self.defer(
            trigger=KbatchJobTrigger(
                job_name=job["metadata"]["name"],
                namespace=self.resolved_namespace(),
                conn_id=self.conn_id,
                job_uid=job["metadata"].get("uid"),
                wait={"stream_logs": False},
                on_kill_action="keep",
                cluster_context=self.cluster_context,
                config_file=self.config_file,
                not_before=time.time() + hold if hold > 0 else None,
            ),
            method_name="execute_complete",
            kwargs={"deadline": deadline},
            timeout=timedelta(seconds=remaining),
        )

    def resume_wait(self, context: Context, event: Any = None, deadline: float | None = None) -> None:
        """The timer fired: look for the Job(s) again."""
        return self._check_or_defer(deadline)

    def execute_complete(
        self, context: Context, event: dict[str, Any], deadline: float | None = None
    ) -> None:
        if event.get("status") == "finished" and event.get("succeeded"):
            self.log.info("job %s/%s completed", event["namespace"], event["name"])
            if self.job_name is not None:
                return None
            return self._check_or_defer(deadline)  # other Jobs of the selector may still run
        message = f"job {event.get('namespace')}/{event.get('name')} did not complete: {event}"
        if event.get("status") == "finished" and not event.get("retryable", True):
            raise AirflowFailException(message)
        raise AirflowException(message)
