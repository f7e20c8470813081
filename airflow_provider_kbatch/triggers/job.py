"""KbatchJobTrigger: the deferred wait for one Job, held by the triggerer.

The trigger watches the Job (``resourceVersion`` resume, re-list on 410, reconnect with backoff:
see ``AsyncKbatchHook.watch_job``), streams pod logs into the task log and yields exactly one
event -- or, when the operator asked for it and nothing needs a worker, ends the task itself
(``end_task``: :mod:`airflow_provider_kbatch.triggers.task_end`). ``on_kill`` -- a user marks the deferred task failed or success, or clears it -- deletes
(or suspends) the Job: the official provider leaves it running (#36090).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kbatch.engine.results import keeper
from airflow_provider_kbatch.engine.waiter import WaitSettings, wait_for_job
from airflow_provider_kbatch.glue.metrics import live_observer
from airflow_provider_kbatch.glue.tracing import watch_span
from airflow_provider_kbatch.hooks.connected import KbatchConnected
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.triggers.task_end import end_task

log = logging.getLogger(__name__)

OnKill = Literal["delete", "suspend", "keep"]


async def hold_until(not_before: float | None, logger: Any) -> None:
    """Sleep until ``not_before`` (epoch seconds): an event right after the deferral can get the
    task failed by Airflow 3.3 (apache/airflow#72716)."""
    delay = 0.0 if not_before is None else not_before - time.time()
    if delay > 0:
        logger.info("holding the event %.1fs: it came right after the deferral", delay)
        await asyncio.sleep(delay)


class KbatchJobTrigger(KbatchConnected, BaseTrigger):
    """Wait for Job ``namespace/job_name`` to finish; yield one event describing how.

    :param job_name: the Job to watch.
    :param namespace: its namespace.
    :param conn_id: Airflow connection of type ``kubernetes``.
    :param job_uid: uid the Job must have (a recreated Job of the same name is not ours).
    :param index_map: interval string of the logical indexes the Job runs (resumed attempts).
    :param wait: :class:`WaitSettings` as a dict (progress interval, log streaming, queue timeout).
    :param on_kill_action: what a user kill of the deferred task does to the Job.
    :param not_before: epoch seconds before which no event is yielded. A trigger that fires within
        seconds of the deferral can meet Airflow 3.3's race where the task is marked failed
        ("state changed externally", apache/airflow#72716); the operator sets this a few seconds
        after the deferral.
    :param traceparent: the stage span's W3C trace context when tracing is on; the wait is a
        ``kbatch.watch`` span under it (``glue.tracing``).
    :param end_task: set by the operator when the task may end here: on success the trigger
        finishes the stage and yields ``TaskSuccessEvent`` (``triggers.task_end.end_task_spec``);
        None (and every older serialization): the task resumes in a worker for ``execute_complete``.
    """

    def __init__(
        self,
        *,
        job_name: str,
        namespace: str,
        conn_id: str = "kubernetes_default",
        job_uid: str | None = None,
        index_map: str | None = None,
        wait: dict[str, Any] | None = None,
        on_kill_action: OnKill = "delete",
        cluster_context: str | None = None,
        config_file: str | None = None,
        not_before: float | None = None,
        traceparent: str | None = None,
        end_task: dict[str, Any] | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:  # a newer provider may have serialized more; never fail to resume a deferral
            log.warning("KbatchJobTrigger ignores unknown arguments %s", sorted(unknown))
        self.job_name = job_name
        self.namespace = namespace
        self.conn_id = conn_id
        self.job_uid = job_uid
        self.index_map = index_map
        self.wait = WaitSettings.from_dict(wait).to_dict()
        self.on_kill_action = on_kill_action
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.not_before = not_before
        self.traceparent = traceparent
        self.end_task = end_task

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_kbatch.triggers.job.KbatchJobTrigger",
            {
                "job_name": self.job_name,
                "namespace": self.namespace,
                "conn_id": self.conn_id,
                "job_uid": self.job_uid,
                "index_map": self.index_map,
                "wait": self.wait,
                "on_kill_action": self.on_kill_action,
                "cluster_context": self.cluster_context,
                "config_file": self.config_file,
                "not_before": self.not_before,
                "traceparent": self.traceparent,
                "end_task": self.end_task,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        index_map = IndexSet.parse(self.index_map) if self.index_map else None
        try:
            with watch_span(self.traceparent, where="triggerer"):
                result = await wait_for_job(
                    self.async_hook(),
                    self.namespace,
                    self.job_name,
                    index_map=index_map,
                    settings=WaitSettings.from_dict(self.wait),
                    log=self.log,
                    on_progress=live_observer(self._stage_tags()),
                    keep=keeper(self.hook, self.namespace, self.log),
                )
        except Exception as err:  # reported to execute_complete, which fails the task with it
            self.log.exception("waiting for job %s/%s failed", self.namespace, self.job_name)
            yield TriggerEvent(
                {"status": "error", "namespace": self.namespace, "name": self.job_name, "error": str(err)}
            )
            return
        event = result.to_event(self.namespace, self.job_name)
        if self.job_uid and event["uid"] and event["uid"] != self.job_uid:
            event = {**event, "status": "deleted", "message": f"job was replaced (uid {event['uid']})"}
        ended = await end_task(self, self.end_task, event) if self.end_task else None
        await hold_until(self.not_before, self.log)
        yield ended if ended is not None else TriggerEvent(event)

    def _stage_tags(self) -> dict[str, str]:
        """The metric tags of the stage (the triggerer sets ``task_instance``)."""
        ti = self.task_instance
        return {
            "dag_id": str(getattr(ti, "dag_id", "") or ""),
            "task_id": str(getattr(ti, "task_id", "") or ""),
            "namespace": self.namespace,
        }

    async def on_kill(self) -> None:
        """A user killed the deferred task: stop the Job so no pod keeps running."""
        if self.on_kill_action == "keep":
            return
        hook = self.async_hook()
        if self.on_kill_action == "suspend":
            self.log.info("task killed while deferred: suspending job %s/%s", self.namespace, self.job_name)
            await hook.set_suspend(self.namespace, self.job_name, True)
        else:
            self.log.info("task killed while deferred: deleting job %s/%s", self.namespace, self.job_name)
            await hook.delete_job(self.namespace, self.job_name, propagation="Foreground")
