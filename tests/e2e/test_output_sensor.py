"""KbatchOutputSensor in deferrable mode, run by ``airflow dags test`` (which runs the trigger in
line): it defers on a watch of the producing DAG's ledgers on the real control plane, ignores a
ledger whose stage has not succeeded and another run's ledger, and fires on the write that
records the output."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from airflow_provider_kbatch.hooks.kbatch import KbatchHook
from airflow_provider_kbatch.pipeline import records as rules
from tests.ledger_writes import stage_written

DAG_ID = "kbatch_test_output_sensor"
PRODUCER = "kbatch_test_producer"
RUN = "manual__2026-01-01T00:00:00+00:00"
DIGEST = "sha256:" + "ab" * 32


def _write_stage(hook: KbatchHook, namespace: str, run_id: str, *, succeeded: bool | None) -> None:
    output = {"name": "raw", "manifest_digest": DIGEST, "bytes": 10, "records": 2}
    hook.update_config_map_cas(
        namespace,
        rules.ledger_name(PRODUCER, run_id),
        partial(stage_written, task_id="ingest", output=output, succeeded=succeeded),
        labels=rules.ledger_labels(PRODUCER, run_id),
    )


def test_deferred_output_sensor_fires_on_the_ledger_write_that_records_the_output(
    airflow_env: Any, background: Any, devcluster: Any, namespace: str, record_property: Any
) -> None:
    hook = KbatchHook()  # the devcluster fixture points the default connection at the local cluster
    _write_stage(hook, namespace, RUN, succeeded=None)  # the stage is running: nothing recorded yet
    run = background(DAG_ID, namespace=namespace, producer=PRODUCER, producer_run_id=RUN)
    run.wait_for("[DAG TEST] running trigger in line")
    run.wait_for("watching the ledgers in")
    _write_stage(hook, namespace, "scheduled__2026-01-02T00:00:00+00:00", succeeded=True)  # another run
    time.sleep(2)
    assert run.proc.poll() is None and "recorded:" not in run.output(), run.output()[-4000:]

    written = time.monotonic()
    _write_stage(hook, namespace, RUN, succeeded=True)
    run.wait_for(f"recorded: {DIGEST}", timeout=60)
    record_property("ledger_write_to_trigger_event_s", round(time.monotonic() - written, 3))
    assert run.finish() == 0, run.output()[-6000:]
    assert airflow_env.task_states(DAG_ID)[("wait", -1)] == ("success", 1)
    value = airflow_env.xcom(DAG_ID, "wait")
    assert value["run_id"] == RUN and value["stage"] == "ingest" and value["manifest_digest"] == DIGEST
    assert (value["bytes"], value["records"]) == (10, 2)
    assert run.output().count("[DAG TEST] running trigger in line") == 1  # one watch, no polling
