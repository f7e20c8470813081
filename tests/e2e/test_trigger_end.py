"""A succeeded stage ends in the triggerer under the real deployment (api-server, scheduler,
dag-processor, triggerer on PostgreSQL); one with an outlet still resumes in a worker and emits
its Asset event.

One run of ``kbatch_test_trigger_end`` runs three identical 2-index stages side by side:
``ended`` (the trigger ends it), ``resumed`` (``end_in_triggerer=False``: the worker path, as
before) and ``published`` (an outlet Asset: falls back). What tells the two endings apart is
where ``execute_complete``'s work is logged: a resumed task's worker log (``attempt=1.log``)
holds the Job "as it ran" and the results summary, written by the worker's second run of the
task; an ended task's worker log holds neither -- the worker ran once, up to the deferral --
and its trigger log (``attempt=1.log.trigger.<id>.log``) holds both and says it ended there.

Two latencies are recorded for each stage: from the last container's exit (each pod returns
``time.time()`` just before it exits) and from the trigger's final progress line (the watch saw
the Job finished) to the task instance's ``end_date``. ``KBATCH_TRIGGER_END_RUNS=5``
runs the DAG five times, one after the other, and logs the median and range of each (the README
figure); the suite runs it once.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import statistics
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.triggers.task_end import ENDED_LINE
from tests.conftest import ClusterHandle, wait_until

DAG_ID = "kbatch_test_trigger_end"
TASKS = ("ended", "resumed", "published")
ASSET_URI = "kbatch-test://trigger-end/published"
AS_RAN = "as it ran (also the XCom job_manifest)"
SUMMARY = "2/2 indexes completed, 0 failed"
log = logging.getLogger(__name__)


def _logs(deployment: Any, run_id: str, task_id: str, attempt: int) -> tuple[str, str]:
    """A try's worker log and its trigger log(s), read from the deployment's log folder."""
    base = Path(deployment.log_dir) / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
    worker, trigger = "", ""
    for path in sorted(base.glob(f"**/attempt={attempt}.log*")):
        if path.is_file():
            text = path.read_text(errors="replace")
            if path.name == f"attempt={attempt}.log":
                worker += text
            else:
                trigger += text
    return worker, trigger


def _latencies(deployment: Any, run_id: str, task_id: str, attempt: int) -> tuple[float, float]:
    """Seconds to the TI's end_date from the last pod's exit (its own clock, in its result) and
    from the trigger's seeing the Job finished (its final progress line, ``...; complete``)."""
    result = deployment.xcom(DAG_ID, run_id, task_id)
    exited = max(float(r["exited"]) for r in result["results"].values())
    ((end,),) = deployment.query(
        "select end_date from task_instance where dag_id=%s and run_id=%s and task_id=%s",
        DAG_ID,
        run_id,
        task_id,
    )
    seen = None
    for line in _logs(deployment, run_id, task_id, attempt)[1].splitlines():
        if line.startswith("{") and "0 running; complete" in line:
            seen = datetime.datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
    assert seen is not None, f"no final progress line in {task_id}'s trigger log"
    return float(end.timestamp() - exited), (end - seen).total_seconds()


def _check_run(
    deployment: Any, devcluster: ClusterHandle, namespace: str, run_id: str, marker: str
) -> dict[str, int]:
    """Check one run; the try number of each task (the try that ran its Job)."""
    tis = deployment.task_instances(DAG_ID, run_id)
    assert {tis[(t, -1)][0] for t in TASKS} == {"success"}, deployment.report(DAG_ID)
    tries = {t: tis[(t, -1)][1] for t in TASKS}
    if set(tries.values()) != {1}:  # a worker start timed out in the api-server (the DAG's retries=3)
        log.warning("tries %s: a worker start failed before the stage ran", tries)
    data = devcluster.core().read_namespaced_config_map(rules.ledger_name(DAG_ID, run_id), namespace).data
    for task_id in TASKS:
        result = deployment.xcom(DAG_ID, run_id, task_id)
        assert result["completed_indexes"] == "0-1" and result["summary"] == SUMMARY, result
        assert sorted(result["results"]) == ["0", "1"], result
        manifest = deployment.xcom(DAG_ID, run_id, task_id, key="job_manifest")
        assert manifest["metadata"]["name"] == result["name"] and manifest["metadata"]["uid"] == result["uid"]
        assert "status" not in manifest
        record = rules.read_stage(data, rules.stage_key(task_id))
        assert record is not None and record.state == "succeeded", (task_id, record)
        (attempt,) = record.attempts  # one Job, ended once: no retry after it
        assert attempt.try_number == tries[task_id], (attempt, tries)
        assert attempt.uid == result["uid"] and attempt.ended and str(attempt.completed) == "0-1", attempt

    worker, trigger = _logs(deployment, run_id, "ended", tries["ended"])
    assert "the task ends in the triggerer" in worker  # decided at the deferral
    assert AS_RAN not in worker and SUMMARY not in worker, "a worker ran execute_complete:\n" + worker[-4000:]
    assert ENDED_LINE in trigger and AS_RAN in trigger and SUMMARY in trigger, trigger[-4000:]
    assert all(f"trigger-end index {i} {marker}" in trigger for i in range(2)), trigger[-4000:]
    for task_id, reason in (("resumed", "disabled"), ("published", "outlets")):
        worker, trigger = _logs(deployment, run_id, task_id, tries[task_id])
        assert f"the task resumes in a worker: {reason}" in worker, worker[-4000:]
        assert AS_RAN in worker and SUMMARY in worker, (
            "execute_complete ran in the worker:\n" + worker[-4000:]
        )
        assert ENDED_LINE not in trigger
    # the outlet's Asset event, emitted by the worker that ran execute_complete
    events = deployment.query(
        "select e.source_task_id from asset_event e join asset a on a.id = e.asset_id"
        " where a.uri=%s and e.source_dag_id=%s and e.source_run_id=%s",
        ASSET_URI,
        DAG_ID,
        run_id,
    )
    assert events == [("published",)], events
    return tries


RUNS = int(os.environ.get("KBATCH_TRIGGER_END_RUNS", "1"))


@pytest.mark.timeout(900 + 300 * (RUNS - 1))
def test_a_succeeded_stage_ends_in_the_triggerer_and_one_with_outlets_still_resumes(
    airflow_deployment: Any, devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    deployment = airflow_deployment
    deployment.wait_dag(DAG_ID, timeout=180)
    deployment.unpause(DAG_ID)
    latencies: dict[str, list[float]] = {t: [] for t in TASKS}
    after_seen: dict[str, list[float]] = {t: [] for t in TASKS}
    for _ in range(RUNS):
        marker = f"te-{secrets.token_hex(4)}"
        run_id = f"manual__{marker}"
        deployment.trigger(DAG_ID, run_id, conf={"namespace": namespace, "marker": marker})

        def finished(run_id: str = run_id) -> bool:
            return any(r.run_id == run_id and r.finished for r in deployment.runs(DAG_ID))

        try:
            wait_until(finished, timeout=300, interval=1, what=f"run {run_id} finished")
        except AssertionError:
            raise AssertionError(deployment.report(DAG_ID)) from None
        tries = _check_run(deployment, devcluster, namespace, run_id, marker)
        for task_id in TASKS:
            from_exit, from_seen = _latencies(deployment, run_id, task_id, tries[task_id])
            latencies[task_id].append(from_exit)
            after_seen[task_id].append(from_seen)

    for what, figures in (("last pod exit", latencies), ("trigger saw the Job finished", after_seen)):
        for task_id, values in figures.items():
            median = statistics.median(values)
            key = "exit" if figures is latencies else "seen"
            record_property(f"trigger_end_{key}_to_end_{task_id}_median_s", round(median, 3))
            log.warning(
                "measured: %s: %s -> TI end_date median %.2f s, range %.2f-%.2f s over %d runs: %s",
                task_id,
                what,
                median,
                min(values),
                max(values),
                len(values),
                [round(v, 2) for v in values],
            )
