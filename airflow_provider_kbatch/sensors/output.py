"""KbatchOutputSensor: wait until a stage of some DAG run has recorded its output in the run ledger.

The ledger (one ConfigMap per DAG run) is the source of truth: a stage's output counts once the
stage is ``succeeded`` and its output (name, manifest digest, bytes, records, contract) is
recorded. The sensor returns that record (XCom), so a downstream DAG can pin the exact data it
read. Poke and reschedule modes list the DAG's ledgers once per poke; deferrable mode hands the
wait to :class:`KbatchOutputTrigger`, which watches them and fires on the ledger write. For
event-driven scheduling use the Asset the producing stage declares instead
(``kbatch://<namespace>/<dag id>/<output>``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airflow_provider_kbatch.glue.settings import default_deferrable
from airflow_provider_kbatch.hooks.connected import KbatchConnected
from airflow_provider_kbatch.pipeline.output_lookup import OutputQuery, find_output
from airflow_provider_kbatch.triggers.output import KbatchOutputTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


__all__ = ["KbatchOutputSensor", "find_output"]


class KbatchOutputSensor(KbatchConnected, BaseSensorOperator):
    """Succeed when ``stage`` (or the stage producing ``output``) of a DAG run has a recorded output.

    :param external_dag_id: the producing DAG (templated).
    :param run_id: its run (templated), e.g. ``"{{ run_id }}"`` for the same run id; or
    :param logical_date: the run's logical date (templated), e.g. ``"{{ logical_date }}"``: the
        run is found among the DAG's ledgers through the logical date its stages recorded.
    :param output_name: the output name (templated; ``output`` is the operator's XComArg); and/or
    :param stage: the producing task id (templated).
    :param namespace: namespace of the ledger (templated); ``None`` (default): the connection's
        ``namespace`` extra, else ``default``. An invalid name fails before any request.
    :param deferrable: wait in the triggerer, which watches the ledgers (no poke interval);
        default ``[kbatch] default_deferrable`` (default True; read when the module is imported).
        ``timeout`` bounds the wait.

    Returns ``{"dag_id", "run_id", "stage", "name", "manifest_digest", "bytes", "records", "contract"}``.
    """

    template_fields: Sequence[str] = (
        "external_dag_id",
        "run_id",
        "logical_date",
        "output_name",
        "stage",
        "namespace",
    )
    ui_color = "#e6f0d6"

    def __init__(
        self,
        *,
        external_dag_id: str,
        run_id: str | None = None,
        logical_date: str | None = None,
        output_name: str | None = None,
        stage: str | None = None,
        namespace: str | None = None,
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        deferrable: bool = default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (run_id is None) == (logical_date is None):
            raise ValueError("KbatchOutputSensor: pass exactly one of run_id or logical_date")
        if output_name is None and stage is None:
            raise ValueError("KbatchOutputSensor: pass output_name, stage, or both")
        self.external_dag_id = external_dag_id
        self.run_id = run_id
        self.logical_date = logical_date
        self.output_name = output_name
        self.stage = stage
        self.namespace = namespace
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.deferrable = deferrable

    def _query(self) -> OutputQuery:
        """The rendered query; a wrong argument fails the task without retries, naming it."""
        query = OutputQuery(
            dag_id=self.external_dag_id,
            run_id=self.run_id,
            logical_date=self.logical_date,
            output=self.output_name,
            stage=self.stage,
        )
        problems = query.problems()
        if problems:
            raise AirflowFailException(f"KbatchOutputSensor {self.task_id}: " + "; ".join(problems))
        return query

    def _find(self, query: OutputQuery) -> dict[str, Any] | None:
        namespace = self._namespace()
        for config_map in self.hook.list_config_maps(namespace, query.selector()):
            found = query.match(config_map)
            if found is not None:
                self.log.info("%s recorded: %s", query.describe(), found["manifest_digest"])
                return found
        self.log.info("%s: not recorded yet in %s", query.describe(), namespace)
        return None

    def _namespace(self) -> str:
        """The namespace argument after templating, else the connection's; checked (final)."""
        from airflow_provider_kbatch.glue.errors import airflow_errors
        from airflow_provider_kbatch.hooks.connection import task_namespace

        with airflow_errors():
            return task_namespace(self.namespace, lambda: self.hook.get_namespace(), conn_id=self.conn_id)

    def poke(self, context: Context) -> PokeReturnValue:
        found = self._find(self._query())
        return PokeReturnValue(is_done=found is not None, xcom_value=found)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        query = self._query()
        found = self._find(query)
        if found is not None:
            return found
        # an event right after the deferral can get the task failed by Airflow 3.3
        # (apache/airflow#72716): the operator's hold applies to this deferral too
        from airflow_provider_kbatch.glue.settings import event_hold_seconds

        hold = event_hold_seconds()
        self.defer(
            trigger=KbatchOutputTrigger(
                external_dag_id=query.dag_id,
                namespace=self._namespace(),
                run_id=query.run_id,
                logical_date=query.logical_date,
                output_name=query.output,
                stage=query.stage,
                conn_id=self.conn_id,
                cluster_context=self.cluster_context,
                config_file=self.config_file,
                not_before=time.time() + hold if hold > 0 else None,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if event.get("status") == "success":
            return event["output"]
        message = f"KbatchOutputSensor {self.task_id}: watching the ledgers failed: {event.get('error')}"
        if self.soft_fail or getattr(self, "never_fail", False):
            raise AirflowSkipException(f"skipping (soft_fail/never_fail): {message}")
        raise AirflowException(message)
