"""KbatchOutputTrigger: the deferred wait of ``KbatchOutputSensor``, held by the triggerer.

It watches the producing DAG's ledger ConfigMaps (list, then a resumable watch: resourceVersion
resume, re-list on 410, reconnect with backoff) and yields one event as soon as one of them
records the output. No polling interval: the event follows the ledger write.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kbatch.hooks.connected import KbatchConnected
from airflow_provider_kbatch.pipeline.output_lookup import OutputQuery
from airflow_provider_kbatch.triggers.job import hold_until

log = logging.getLogger(__name__)


class KbatchOutputTrigger(KbatchConnected, BaseTrigger):
    """Wait until a ledger of ``external_dag_id`` in ``namespace`` records the queried output.

    The arguments are those of :class:`OutputQuery` plus the connection; ``not_before`` (epoch
    seconds) holds an event that comes right after the deferral (see ``KbatchJobTrigger``).
    Yields ``{"status": "success", "output": {...}}`` or ``{"status": "error", "error": "..."}``.
    """

    def __init__(
        self,
        *,
        external_dag_id: str,
        namespace: str,
        run_id: str | None = None,
        logical_date: str | None = None,
        output_name: str | None = None,
        stage: str | None = None,
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        not_before: float | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:  # a newer provider may have serialized more; never fail to resume a deferral
            log.warning("KbatchOutputTrigger ignores unknown arguments %s", sorted(unknown))
        self.query = OutputQuery(
            dag_id=external_dag_id, run_id=run_id, logical_date=logical_date, output=output_name, stage=stage
        )
        self.namespace = namespace
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.not_before = not_before

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_kbatch.triggers.output.KbatchOutputTrigger",
            {
                "external_dag_id": self.query.dag_id,
                "namespace": self.namespace,
                "run_id": self.query.run_id,
                "logical_date": self.query.logical_date,
                "output_name": self.query.output,
                "stage": self.query.stage,
                "conn_id": self.conn_id,
                "cluster_context": self.cluster_context,
                "config_file": self.config_file,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self.log.info("watching the ledgers in %s for %s", self.namespace, self.query.describe())
        try:
            found = await self._first_match()
        except Exception as err:  # reported to execute_complete, which fails the task with it
            self.log.exception("watching the ledgers of %s failed", self.query.dag_id)
            yield TriggerEvent({"status": "error", "error": f"{type(err).__name__}: {err}"})
            return
        self.log.info("%s recorded: %s", self.query.describe(), found["manifest_digest"])
        await hold_until(self.not_before, self.log)
        yield TriggerEvent({"status": "success", "output": found})

    async def _first_match(self) -> dict[str, Any]:
        watch = self.async_hook().watch_config_maps(self.namespace, self.query.selector())
        async with aclosing(watch) as events:
            async for event_type, config_map in events:
                if event_type == "DELETED":
                    continue
                found = self.query.match(config_map)
                if found is not None:
                    return found
        raise RuntimeError("the ledger watch ended")  # resumable_watch never ends by itself
