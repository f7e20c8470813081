"""OutputQuery.match trusts a ledger only when its identity annotations are the query's run's."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_kbatch.pipeline import records
from airflow_provider_kbatch.pipeline.output_lookup import OutputQuery

RUN = "manual__2026-01-01T00:00:00+00:00"
DATE = "2026-01-01T00:00:00+00:00"
T0 = "2026-01-01T00:00:00Z"


def ledger(dag_id: str, run_id: str, *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A ledger ConfigMap of ``dag_id``/``run_id`` where stage ``ingest`` recorded output ``raw``."""
    key = records.stage_key("ingest")
    data = records.record_workspace(
        {},
        claim="ws",
        generation=1,
        uid="pvc-uid",
        provisioned=True,
        retention="retain",
        run_id=run_id,
        logical_date=DATE,
        at=T0,
    )
    data = records.record_attempt_started(
        data, key, try_number=1, job="kb-ingest-g1", uid="u1", spec_hash="h", index_map="0", at=T0
    )
    data = records.record_attempt_finished(
        data,
        key,
        job="kb-ingest-g1",
        uid="u1",
        succeeded=True,
        at=T0,
        completed="0",
        output={"name": "raw", "manifest_digest": "sha256:d1"},
    )
    body = records.ledger_config_map(dag_id, run_id)
    if annotations is not None:
        body["metadata"]["annotations"] = annotations
    return {**body, "data": data}


def foreign(dag_id: str, run_id: str) -> dict[str, str]:
    """The identity annotations of another run (as if its ids hashed to the same ledger name)."""
    return records.ledger_annotations(dag_id, run_id)


@pytest.mark.parametrize(
    "query",
    [
        OutputQuery(dag_id="etl", run_id=RUN, output="raw"),
        OutputQuery(dag_id="etl", logical_date=DATE, stage="ingest"),
    ],
)
def test_a_ledger_with_its_runs_identity_matches(query: OutputQuery) -> None:
    found = query.match(ledger("etl", RUN))
    assert found is not None and found["run_id"] == RUN and found["manifest_digest"] == "sha256:d1"


def test_a_ledger_without_annotations_written_by_an_older_provider_still_matches() -> None:
    found = OutputQuery(dag_id="etl", run_id=RUN, output="raw").match(ledger("etl", RUN, annotations={}))
    assert found is not None and found["name"] == "raw"


@pytest.mark.parametrize("other", [foreign("etl", "another-run"), foreign("other-dag", RUN)])
def test_by_run_id_a_colliding_ledger_of_another_run_is_refused(other: dict[str, str]) -> None:
    # Same name (the query's run's ledger name), another run's annotations: never mixed in.
    colliding = ledger("etl", RUN, annotations=other)
    with pytest.raises(records.LedgerIdentityError, match="belongs to DAG"):
        OutputQuery(dag_id="etl", run_id=RUN, output="raw").match(colliding)


def test_by_run_id_a_ledger_of_a_newer_schema_is_refused() -> None:
    newer = {**records.ledger_annotations("etl", RUN), records.ANNOTATION_SCHEMA_VERSION: "99"}
    with pytest.raises(records.LedgerIdentityError, match="newer"):
        OutputQuery(dag_id="etl", run_id=RUN, output="raw").match(ledger("etl", RUN, annotations=newer))


@pytest.mark.parametrize("other", [foreign("other-dag", RUN), foreign("etl", "another-run")])
def test_by_logical_date_a_ledger_of_another_dag_or_run_is_not_a_match(other: dict[str, str]) -> None:
    query = OutputQuery(dag_id="etl", logical_date=DATE, output="raw")
    assert query.match(ledger("etl", RUN, annotations=other)) is None
    assert query.match(ledger("etl", RUN)) is not None
