"""Test DAG: ``glue.assets.asset_known`` inside real task processes, the question
``engine.first_event`` asks before the first event of a new Asset.

``emit`` attaches the new Asset ``kbatch-test://asset-lookup/<marker>`` to an AssetAlias (as a
kbatch stage of a run-time namespace does); its success creates it. ``lookup``, right after,
asks about it and about one that never existed, and whether the Asset is active yet (the
scheduler activates a new Asset some seconds after it was created; ``asset_known`` must answer
True before that).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetAlias, Param, task

from airflow_provider_kbatch.glue.assets import asset_known

ALIAS = AssetAlias(name="kbatch-test:asset-lookup")

with DAG(
    dag_id="kbatch_test_asset_lookup",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"marker": Param("m", type="string")},
    tags=["kbatch", "test"],
):

    @task(outlets=[ALIAS])
    def emit(params: dict[str, Any], outlet_events: Any = None) -> str:
        uri = f"kbatch-test://asset-lookup/{params['marker']}"
        outlet_events[ALIAS].add(Asset(uri=uri))
        return uri

    @task
    def lookup(uri: str) -> dict[str, Any]:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import ErrorResponse, GetAssetByUri

        active = not isinstance(task_runner.SUPERVISOR_COMMS.send(GetAssetByUri(uri=uri)), ErrorResponse)
        return {"known": asset_known(uri), "never": asset_known(uri + "-never"), "active": active}

    lookup(emit())
