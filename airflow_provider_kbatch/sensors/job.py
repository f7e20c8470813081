"""KbatchJobSensor: wait for an existing Job (by name or label selector) to finish.

Poke and reschedule modes read the Job once per poke; ``deferrable=True`` hands the wait to
:class:`~airflow_provider_kbatch.triggers.job.KbatchJobTrigger` (a watch, not a poll). The
sensor does not own the Job: killing the sensor never deletes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_kbatch.status import job_outcome
from airflow_provider_kbatch.triggers.job import KbatchJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_kbatch.hooks.kbatch import KbatchHook


class KbatchJobSensor(BaseSensorOperator):
    """Succeed when the Job(s) completed; fail when one failed.

    :param job_name: the Job to wait for (templated); or
    :param label_selector: every Job matching it must complete (templated); at least one must exist.
    :param namespace: namespace (templated).
    :param deferrable: wait in the triggerer with a watch (``job_name`` or a selector matching one Job).
    """

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
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (job_name is None) == (label_selector is None):
            raise ValueError("KbatchJobSensor: pass exactly one of job_name or label_selector")
        self.job_name = job_name
        self.label_selector = label_selector
        self.namespace = namespace
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> KbatchHook:
        from airflow_provider_kbatch.hooks.kbatch import KbatchHook

        return KbatchHook(
            conn_id=self.conn_id, cluster_context=self.cluster_context, config_file=self.config_file
        )

    def _jobs(self) -> list[dict[str, Any]]:
        if self.job_name:
            job = self.hook.get_job(self.namespace, self.job_name)
            return [job] if job else []
        return self.hook.list_jobs(self.namespace, self.label_selector or "")

    def poke(self, context: Context) -> bool:
        jobs = self._jobs()
        if not jobs:
            self.log.info("no job %s in %s yet", self.job_name or self.label_selector, self.namespace)
            return False
        done = True
        for job in jobs:
            name = job["metadata"]["name"]
            outcome = job_outcome(job)
            if outcome.finished and not outcome.succeeded:
                message = f"job {self.namespace}/{name} failed: {outcome.reason}: {outcome.message}"
                raise AirflowException(message) if outcome.retryable else AirflowFailException(message)
            if not outcome.finished:
                done = False
                self.log.info("job %s/%s not finished yet", self.namespace, name)
        return done

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        jobs = self._jobs()
        if len(jobs) != 1:
            raise AirflowException(
                f"deferrable KbatchJobSensor needs exactly one job; {self.label_selector!r} matches {len(jobs)}"
            )
        timeout = timedelta(seconds=self.timeout) if self.timeout else None
        self.defer(
            trigger=KbatchJobTrigger(
                job_name=jobs[0]["metadata"]["name"],
                namespace=self.namespace,
                conn_id=self.conn_id,
                job_uid=jobs[0]["metadata"].get("uid"),
                wait={"stream_logs": False},
                on_kill_action="keep",
                cluster_context=self.cluster_context,
                config_file=self.config_file,
            ),
            method_name="execute_complete",
            timeout=timeout,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        if event.get("status") == "finished" and event.get("succeeded"):
            self.log.info("job %s/%s completed", event["namespace"], event["name"])
            return
        message = f"job {event.get('namespace')}/{event.get('name')} did not complete: {event}"
        if event.get("status") == "finished" and not event.get("retryable", True):
            raise AirflowFailException(message)
        raise AirflowException(message)
