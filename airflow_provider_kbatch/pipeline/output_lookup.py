"""Finding a stage's recorded output in the run ledgers (pure).

Shared by ``KbatchOutputSensor`` (a poke lists the ledgers) and ``KbatchOutputTrigger`` (the
triggerer watches them): an :class:`OutputQuery` names the producing DAG, its run (by run id or by
logical date) and the output (by name, by producing stage, or both); :meth:`OutputQuery.match`
says whether one ledger ConfigMap holds it and, if so, what the sensor returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.spec.times import parse_time


def normalize_date(value: str) -> str:
    """An ISO date-time (``2026-01-01``, ``2026-01-01 00:00:00+00:00``, ``...Z``) as UTC ISO."""
    return parse_time(str(value)).isoformat()


def find_output(
    data: Mapping[str, str], *, output: str | None, stage: str | None, map_index: int = -1
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


def producer_of(data: Mapping[str, str], output: str) -> str | None:
    """The task id of the succeeded stage that recorded ``output``."""
    for key in rules.stage_keys(data):
        record = rules.read_stage(data, key)
        if record is not None and record.output is not None and record.output.name == output:
            return record.task_id
    return None


def run_of_date(data: Mapping[str, str], logical_date: str) -> str | None:
    """The run id of this ledger when its workspace record has ``logical_date``; else ``None``."""
    try:
        record = ws.read_workspace(data)
    except ValueError:
        return None
    if record is None or not record.logical_date:
        return None
    if normalize_date(record.logical_date) != normalize_date(logical_date):
        return None
    return record.run_id


@dataclass(frozen=True)
class OutputQuery:
    """Which output of which DAG run to wait for. Exactly one of ``run_id`` / ``logical_date``;
    at least one of ``output`` / ``stage``."""

    dag_id: str
    run_id: str | None = None
    logical_date: str | None = None
    output: str | None = None
    stage: str | None = None

    def problems(self) -> list[str]:
        """What is wrong with the query, each naming the argument and the fix (empty when valid)."""
        found = []
        if not self.dag_id or not self.dag_id.strip():
            found.append("external_dag_id is empty: name the DAG that produces the output")
        if (self.run_id is None) == (self.logical_date is None):
            found.append("pass exactly one of run_id or logical_date")
        elif self.run_id is not None and not self.run_id.strip():
            found.append("run_id is empty (after templating): pass the producing run's id")
        elif self.logical_date is not None:
            try:
                normalize_date(self.logical_date)
            except ValueError:
                found.append(
                    f"logical_date {self.logical_date!r} is not an ISO date or date-time "
                    "(e.g. '2026-01-01' or '{{ logical_date }}')"
                )
        if self.output is None and self.stage is None:
            found.append("pass output_name, stage, or both")
        return found

    def selector(self) -> str:
        """Label selector of the ledgers that may hold the output."""
        return rules.ledger_selector(self.dag_id, self.run_id)

    def describe(self) -> str:
        what = " of ".join(
            part
            for part in (
                f"output {self.output!r}" if self.output else None,
                f"stage {self.stage!r}" if self.stage else None,
            )
            if part
        )
        run = f"run {self.run_id!r}" if self.run_id is not None else f"logical date {self.logical_date}"
        return f"{what} of DAG {self.dag_id!r} ({run})"

    def match(self, config_map: Mapping[str, Any]) -> dict[str, Any] | None:
        """What the sensor returns when ``config_map`` is this run's ledger and holds the output.

        The name holds only a hash of the ids, so the ledger's identity annotations are checked
        too (:func:`~airflow_provider_kbatch.pipeline.records.check_ledger`; a ledger an older
        provider wrote without them passes). By run id: a ConfigMap under this run's ledger name
        that belongs to another run (or a newer schema) raises
        :class:`~airflow_provider_kbatch.pipeline.records.LedgerIdentityError` -- this run's
        ledger cannot exist beside it, so waiting would never end. By logical date: a ledger
        whose annotations name another DAG or run than its workspace record's is not a match.
        """
        metadata = config_map.get("metadata") or {}
        data: Mapping[str, str] = config_map.get("data") or {}
        if self.run_id is not None:
            if metadata.get("name") != rules.ledger_name(self.dag_id, self.run_id):
                return None
            rules.check_ledger(config_map, self.dag_id, self.run_id)
            run_id: str | None = self.run_id
        else:
            assert self.logical_date is not None
            run_id = run_of_date(data, self.logical_date)
            if run_id is None:
                return None
            try:
                rules.check_ledger(config_map, self.dag_id, run_id)
            except rules.LedgerIdentityError:
                return None
        found = find_output(data, output=self.output, stage=self.stage)
        if found is None:
            return None
        return {
            "dag_id": self.dag_id,
            "run_id": run_id,
            "stage": self.stage or producer_of(data, found.name),
            "name": found.name,
            "manifest_digest": found.manifest_digest,
            "bytes": found.bytes,
            "records": found.records,
            "contract": dict(found.contract) if found.contract else None,
        }
