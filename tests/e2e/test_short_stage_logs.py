"""Short stages keep their logs under the real triggerer (api-server, scheduler, dag-processor,
triggerer of the shared deployment).

The triggerer starts a trigger about 2 s after the deferral; a stage whose pods exit in well under
a second is finished by then, its pod watch never reports a pod, and -- before the waiter read
the logs no stream delivered -- its task log had no ``[index N]`` line (3 of 7 trigger logs were
empty, every resumed attempt among them). Here three runs of a 3-index stage succeed at once and
two more fail index 1 on the first try and resume it on the second: every one of the seven
attempts' logs has each of its indexes' line, exactly once.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClusterHandle, wait_until

DAG_ID, TASK_ID = "kbatch_test_short_logs", "short"
log = logging.getLogger(__name__)


def attempt_logs(deployment: Any, run_id: str) -> dict[int, str]:
    """The task's log per attempt: the worker's file and the triggerer's, read from the
    deployment's log folder (``attempt=<n>.log``, ``attempt=<n>.log.trigger.<id>.log``)."""
    base = Path(deployment.log_dir) / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={TASK_ID}"
    logs: dict[int, str] = {}
    for path in sorted(base.glob("**/attempt=*")):
        found = re.match(r"attempt=(\d+)", path.name)
        if found and path.is_file():
            number = int(found.group(1))
            logs[number] = logs.get(number, "") + path.read_text(errors="replace")
    return logs


def expected_lines(marker: str, fail_index: int) -> dict[int, list[str]]:
    """Attempt -> the index lines its task log must hold."""
    first = [f"[index {i}] short stage index {i} try 1 {marker}" for i in range(3)]
    if fail_index < 0:
        return {1: first}
    return {1: first, 2: [f"[index {fail_index}] short stage index {fail_index} try 2 {marker}"]}


@pytest.mark.timeout(900)
def test_short_stages_log_every_index_under_the_real_triggerer_also_when_resumed(
    airflow_deployment: Any, devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    deployment = airflow_deployment
    deployment.wait_dag(DAG_ID, timeout=180)
    deployment.unpause(DAG_ID)
    runs: dict[str, tuple[str, int]] = {}
    for fail_index in (-1, -1, -1, 1, 1):
        marker = f"short-{secrets.token_hex(5)}"
        run_id = f"manual__{marker}"
        deployment.trigger(
            DAG_ID, run_id, conf={"namespace": namespace, "marker": marker, "fail_index": fail_index}
        )
        runs[run_id] = (marker, fail_index)

    def finished() -> bool:
        states = {r.run_id: r for r in deployment.runs(DAG_ID) if r.run_id in runs}
        return len(states) == len(runs) and all(r.finished for r in states.values())

    try:
        wait_until(finished, timeout=600, interval=2, what="the five runs finished")
    except AssertionError:
        raise AssertionError(deployment.report(DAG_ID)) from None
    states = {r.run_id: r.state for r in deployment.runs(DAG_ID) if r.run_id in runs}
    assert set(states.values()) == {"success"}, deployment.report(DAG_ID)

    with_lines, total, missing = 0, 0, []
    for run_id, (marker, fail_index) in runs.items():
        state, tries = deployment.task_instances(DAG_ID, run_id)[(TASK_ID, -1)]
        assert (state, tries) == ("success", 1 if fail_index < 0 else 2)
        logs = wait_until(lambda run_id=run_id: attempt_logs(deployment, run_id), timeout=30, what="logs")
        for attempt, lines in expected_lines(marker, fail_index).items():
            total += 1
            text = logs.get(attempt, "")
            counts = {line: text.count(line) for line in lines}
            if all(n == 1 for n in counts.values()):
                with_lines += 1
            else:
                missing.append((run_id, attempt, counts))
    record_property("short_stage_attempt_logs_with_every_index_line", f"{with_lines}/{total}")
    log.warning("measured: %d of %d attempt logs hold every index line exactly once", with_lines, total)
    assert total == 7
    assert not missing, f"{with_lines}/{total} attempt logs complete; missing or repeated: {missing}"
