"""``glue.assets.asset_known`` in real task processes under the deployment (PostgreSQL,
scheduler, triggerer): a new alias-attached Asset is known as soon as the success that created it
committed, active or not yet; one that never existed is not (DAG ``kbatch_test_asset_lookup``)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.e2e
DAG_ID = "kbatch_test_asset_lookup"


@pytest.mark.timeout(600)
def test_a_new_asset_is_known_once_its_first_event_committed(airflow_deployment: Any) -> None:
    deployment = airflow_deployment
    deployment.wait_dag(DAG_ID, timeout=180)
    deployment.unpause(DAG_ID)
    marker = secrets.token_hex(4)
    run_id = f"manual__{marker}"
    deployment.trigger(DAG_ID, run_id, conf={"marker": marker})

    def finished() -> bool:
        return any(r.run_id == run_id and r.finished for r in deployment.runs(DAG_ID))

    try:
        wait_until(finished, timeout=300, interval=1, what=f"run {run_id} finished")
    except AssertionError:
        raise AssertionError(deployment.report(DAG_ID)) from None
    states = deployment.task_instances(DAG_ID, run_id)
    assert {t: s for (t, _), (s, _) in states.items()} == {"emit": "success", "lookup": "success"}, (
        deployment.report(DAG_ID)
    )
    found = deployment.xcom(DAG_ID, run_id, "lookup")
    assert found["known"] is True and found["never"] is False, found
    print(f"  the new Asset was active when looked up: {found['active']}")  # noqa: T201
