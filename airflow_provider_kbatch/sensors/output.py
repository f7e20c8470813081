"""KbatchOutputSensor: wait until a stage of some DAG run has recorded its output in the run ledger.

The ledger (one ConfigMap per DAG run) is the source of truth: a stage's output counts once the
stage is ``succeeded`` and its output (name, manifest digest, bytes, records, contract) is
recorded. The sensor returns that record (XCom), so a downstream DAG can pin the exact data it
read. Poke and reschedule modes read the ConfigMap once per poke; for event-driven scheduling
use the Asset the producing stage declares instead (``kbatch://<namespace>/<dag id>/<output>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_kbatch.pipeline import ledger as rules
from airflow_provider_kbatch.workspace import read_workspace

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_kbatch.hooks.kbatch import KbatchHook


def find_output(
    data: dict[str, str], *, output: str | None, stage: str | None, map_index: int = -1
) -> rules.StageOutput | None:
    """The recorded output of a succeeded stage: by stage (task id), by output name, or both."""
    if stage is not None:
        found = rules.stage_output(data, rules.stage_key(stage, map_index))
        return found if found is not None and (output is None or found.name == output) else None
    for key in rules.stage_keys(data):
        found = rules.stage_output(data, key)
        if found is not None and found.name == output:
            return found
    return None


class KbatchOutputSensor(BaseSensorOperator):
    """Succeed when ``stage`` (or the stage producing ``output``) of a DAG run has a recorded output.

    :param external_dag_id: the producing DAG (templated).
    :param run_id: its run (templated), e.g. ``"{{ run_id }}"`` for the same run id; or
    :param logical_date: the run's logical date (templated), e.g. ``"{{ logical_date }}"``: the
        run is found among the DAG's ledgers through the logical date its stages recorded.
    :param output_name: the output name (templated; ``output`` is the operator's XComArg); and/or
    :param stage: the producing task id (templated).
    :param namespace: namespace of the ledger (templated).

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
        namespace: str = "default",
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
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

    @cached_property
    def hook(self) -> KbatchHook:
        from airflow_provider_kbatch.hooks.kbatch import KbatchHook

        return KbatchHook(
            conn_id=self.conn_id, cluster_context=self.cluster_context, config_file=self.config_file
        )

    def _ledger(self) -> tuple[str | None, dict[str, str] | None]:
        from airflow_provider_kbatch import storage

        if self.run_id is not None:
            if not self.run_id.strip():
                raise AirflowFailException("KbatchOutputSensor: run_id is empty (after templating)")
            config_map = self.hook.get_config_map(
                self.namespace, rules.ledger_name(self.external_dag_id, self.run_id)
            )
            return self.run_id, (dict(config_map.get("data") or {}) if config_map else None)
        assert self.logical_date is not None
        data = storage.find_run_ledger(self.hook, self.namespace, self.external_dag_id, self.logical_date)
        record = read_workspace(data) if data else None
        return (record.run_id if record else None), data

    def poke(self, context: Context) -> PokeReturnValue:
        run_id, data = self._ledger()
        if data is None:
            self.log.info(
                "no ledger yet for DAG %s run %s in %s",
                self.external_dag_id,
                run_id or self.logical_date,
                self.namespace,
            )
            return PokeReturnValue(is_done=False)
        found = find_output(data, output=self.output_name, stage=self.stage)
        if found is None:
            self.log.info(
                "DAG %s run %s: no recorded output %s of stage %s yet",
                self.external_dag_id,
                run_id,
                self.output_name,
                self.stage,
            )
            return PokeReturnValue(is_done=False)
        producer = self.stage or next(
            (
                r.task_id
                for k in rules.stage_keys(data)
                if (r := rules.read_stage(data, k)) and r.output and r.output.name == found.name
            ),
            None,
        )
        self.log.info("output %s of stage %s recorded: %s", found.name, producer, found.manifest_digest)
        return PokeReturnValue(
            is_done=True,
            xcom_value={
                "dag_id": self.external_dag_id,
                "run_id": run_id,
                "stage": producer,
                "name": found.name,
                "manifest_digest": found.manifest_digest,
                "bytes": found.bytes,
                "records": found.records,
                "contract": dict(found.contract) if found.contract else None,
            },
        )
