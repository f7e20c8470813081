"""KbatchConcurrencyTrigger: a ``concurrency_policy="Forbid"`` stage waiting, in the triggerer,
for another run's Job of the same stage (no worker slot is held).

Every ``poll_seconds`` it lists the stage's Jobs (one label selector, every run) and reads the
stage's lock (:func:`airflow_provider_kbatch.engine.concurrency.aforbid_blocker`); it logs each new
blocker (``waiting for run X's Job Y (concurrency_policy=Forbid)``) and yields one event:
``{"status": "free"}`` when nothing blocks any more (the operator then takes the lock and submits,
or defers again if another waiting run took it first), or ``{"status": "timeout", ...}`` at the
deadline. It only reads: taking the lock is the operator's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kbatch.engine.concurrency import Blocker, aforbid_blocker
from airflow_provider_kbatch.hooks.connected import KbatchConnected
from airflow_provider_kbatch.spec.concurrency import POLL_SECONDS
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.triggers.job import hold_until

log = logging.getLogger(__name__)


class KbatchConcurrencyTrigger(KbatchConnected, BaseTrigger):
    """Wait until no other run's Job of the stage is active and its lock is free or stale.

    :param namespace: the stage's namespace.
    :param dag_id: the stage's DAG id.
    :param task_id: the stage's task id.
    :param run_id: this run (its own Jobs never block it).
    :param map_index: the stage's map index (-1: not mapped).
    :param conn_id: Airflow connection of type ``kubernetes``.
    :param deadline: epoch seconds after which the event is ``timeout`` (None: wait forever).
    :param poll_seconds: seconds between two looks.
    :param not_before: epoch seconds before which no event is yielded (apache/airflow#72716).
    """

    def __init__(
        self,
        *,
        namespace: str,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: int = -1,
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        deadline: float | None = None,
        poll_seconds: float = POLL_SECONDS,
        not_before: float | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:  # a newer provider may have serialized more; never fail to resume a deferral
            log.warning("KbatchConcurrencyTrigger ignores unknown arguments %s", sorted(unknown))
        self.namespace = namespace
        self.dag_id = dag_id
        self.stage_task_id = task_id  # not task_id: BaseTrigger sets that one from the task instance
        self.run_id = run_id
        self.map_index = map_index
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.deadline = deadline
        self.poll_seconds = poll_seconds
        self.not_before = not_before

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_kbatch.triggers.concurrency.KbatchConcurrencyTrigger",
            {
                "namespace": self.namespace,
                "dag_id": self.dag_id,
                "task_id": self.stage_task_id,
                "run_id": self.run_id,
                "map_index": self.map_index,
                "conn_id": self.conn_id,
                "cluster_context": self.cluster_context,
                "config_file": self.config_file,
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
                "not_before": self.not_before,
            },
        )

    def _event(self, status: str, blocker: Blocker | None = None) -> TriggerEvent:
        event: dict[str, Any] = {"status": status, "namespace": self.namespace}
        if blocker is not None:
            event.update(blocked_by_run=blocker.run_id, blocked_by_job=blocker.job)
        return TriggerEvent(event)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        identity = JobIdentity(self.dag_id, self.stage_task_id, self.run_id, self.map_index)
        hook = self.async_hook()
        seen: Blocker | None = None
        while True:
            try:
                blocker = await aforbid_blocker(hook, self.namespace, identity, time.time())
            except Exception as err:  # transient errors outlasted the hook's retries: report
                self.log.exception("looking at the other runs' jobs of %s failed", self.stage_task_id)
                yield TriggerEvent({"status": "error", "namespace": self.namespace, "error": str(err)})
                return
            if blocker is None:
                await hold_until(self.not_before, self.log)
                yield self._event("free", seen)
                return
            if blocker != seen:
                self.log.info("waiting for %s (concurrency_policy=Forbid)", blocker.describe())
                seen = blocker
            if self.deadline is not None and time.time() >= self.deadline:
                yield self._event("timeout", blocker)
                return
            await asyncio.sleep(self.poll_seconds)
