"""KbatchJobOperator behaviour end to end: real Airflow 3 (``airflow tasks test`` / ``airflow dags
test`` in subprocesses, triggers included) against the real local control plane.

* a worker killed mid-wait: the next execute of the same task instance adopts the running Job
  (exactly one Job), and an execute after success reports instead of creating;
* Kueue-style queueing: the test plays Kueue (admits one suspended Job, never the other);
* the races of the official provider (duplicate pods, pods not found yet, parallelism >
  completions) as regression tests;
* an invalid stage fails before anything is sent, naming every field, without Airflow retries;
* the rendered template fields hold the Job manifest that was created.

The test DAGs live in ``tests/e2e/dags`` (dag ids ``kbatch_test_*``).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClusterHandle, dump, wait_until
from tests.e2e.conftest import AirflowEnv

MANAGED = "app.kubernetes.io/managed-by=airflow-provider-kbatch"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
POOL_LABEL = "kbatch-test/pool"  # tests/e2e/dags/kbatch_test_races.py selects nodes by it
log = logging.getLogger(__name__)
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", re.MULTILINE)


# --------------------------------------------------------------------------- helpers


def jobs(devcluster: ClusterHandle, namespace: str, selector: str = MANAGED) -> list[Any]:
    return devcluster.batch().list_namespaced_job(namespace, label_selector=selector).items


def pods_of(devcluster: ClusterHandle, namespace: str, job: Any) -> list[Any]:
    selector = f"batch.kubernetes.io/controller-uid={job.metadata.uid}"
    return devcluster.core().list_namespaced_pod(namespace, label_selector=selector).items


def condition(job: Any, kind: str) -> Any:
    return next((c for c in job.status.conditions or () if c.type == kind and c.status == "True"), None)


def line_time(output: str, needle: str) -> float:
    """Epoch seconds of the first log line containing ``needle`` (Airflow logs in UTC)."""
    for line in output.splitlines():
        if needle in line:
            match = LOG_TIME.match(line)
            if match:
                stamp = datetime.datetime.fromisoformat(match.group(1)).replace(tzinfo=datetime.timezone.utc)
                return stamp.timestamp()
    raise AssertionError(f"no timestamped log line contains {needle!r}")


def measured(record_property: Any, name: str, value: float) -> None:
    """A figure worth reporting: in the junit XML, and logged (``-o log_cli=true``)."""
    record_property(name, round(value, 3))
    log.info("measured %s = %.3f", name, value)


class Background:
    """An ``airflow`` command running in its own process group, output to a file."""

    def __init__(self, airflow_env: AirflowEnv, log: Path, *args: str) -> None:
        self.log = log
        self.proc = airflow_env.spawn(*args, log=log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"airflow did not finish in {timeout}s:\n{self.output()[-6000:]}") from None

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker dies without running any cleanup."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def serialized(airflow_env: AirflowEnv) -> AirflowEnv:
    """``airflow tasks test`` runs a DAG from the metadata database: serialize the DAG folder."""
    airflow_env.run("dags", "reserialize", timeout=300)
    return airflow_env


# --------------------------------------------------------------------------- adoption


@pytest.mark.timeout(420)
def test_killed_worker_mid_wait_is_adopted_by_the_next_execute(
    serialized: AirflowEnv, devcluster: ClusterHandle, namespace: str, tmp_path: Path, record_property: Any
) -> None:
    dag_id, task_id, date = "kbatch_test_adopt", "slow", "2026-02-01"
    gate = tmp_path / "gate"  # the Job's pods run until this file exists
    params = json.dumps({"namespace": namespace, "gate": str(gate)})
    task = ("tasks", "test", dag_id, task_id, date, "-t", params)
    ours = f"{MANAGED},kbatch.io/dag-id={dag_id},kbatch.io/task-id={task_id}"

    first = Background(serialized, tmp_path / "first.log", *task)
    try:
        running = wait_until(
            lambda: [
                j
                for j in jobs(devcluster, namespace, ours)
                if any(p.status.phase == "Running" for p in pods_of(devcluster, namespace, j))
            ],
            timeout=180,
            what="the Job of the first execute with a running pod",
        )
    finally:
        first.kill()  # the worker dies mid-wait: no on_kill, no cleanup
    assert "created job" in first.output(), first.output()[-4000:]
    original = running[0]

    second = Background(serialized, tmp_path / "second.log", *task)
    try:
        wait_until(lambda: "adopting" in second.output(), timeout=240, what="the second execute to adopt")
        assert (
            condition(devcluster.batch().read_namespaced_job(original.metadata.name, namespace), "Complete")
            is None
        )
        gate.touch()  # now let the Job finish
        assert second.wait() == 0, second.output()[-6000:]
    finally:
        second.kill()
    out = second.output()
    assert "adopting the running job of an earlier execute with the same spec" in out, out[-4000:]
    assert "created job" not in out
    after = jobs(devcluster, namespace, ours)
    assert [j.metadata.uid for j in after] == [original.metadata.uid], "exactly one Job, the original"
    assert condition(after[0], "Complete") is not None, dump(after[0].to_dict())
    pods = pods_of(devcluster, namespace, after[0])
    assert len(pods) == 2, "the adopted Job's pods ran once: nothing was resubmitted"
    assert "2/2 indexes completed" in out
    # execute begins right after the rendered fields are stored; it adopts at its first listing
    latency = line_time(out, "adopting the running job") - line_time(
        out, "Updating RenderedTaskInstanceFields"
    )
    measured(record_property, "adoption_latency_s", latency)
    assert latency < 10

    # the same try executed again after success: report the outcome, create nothing
    third = Background(serialized, tmp_path / "third.log", *task)
    assert third.wait() == 0, third.output()[-6000:]
    out = third.output()
    assert "this try already ran this job; reporting its outcome" in out, out[-4000:]
    assert "created job" not in out and "2/2 indexes completed" in out
    assert [j.metadata.uid for j in jobs(devcluster, namespace, ours)] == [original.metadata.uid]
    assert len(pods_of(devcluster, namespace, after[0])) == 2


# --------------------------------------------------------------------------- Kueue-style queue


@pytest.mark.timeout(420)
def test_queued_job_reported_admitted_and_queue_timeout_deletes(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, namespace: str, tmp_path: Path, record_property: Any
) -> None:
    dag_id = "kbatch_test_queue"
    run = Background(
        airflow_env,
        tmp_path / "queue.log",
        *("dags", "test", dag_id, "2026-01-01", "-c", json.dumps({"namespace": namespace})),
    )
    try:
        # play Kueue: the Job waits suspended in the queue until we admit it
        admitted = wait_until(
            lambda: jobs(devcluster, namespace, "kbatch.io/task-id=admitted"),
            timeout=180,
            what="the queued Job",
        )[0]
        assert admitted.spec.suspend is True and admitted.metadata.labels[QUEUE_LABEL] == "team-a"
        assert pods_of(devcluster, namespace, admitted) == []
        time.sleep(2)  # a queue wait of a couple of seconds
        devcluster.batch().patch_namespaced_job(
            admitted.metadata.name, namespace, {"spec": {"suspend": False}}
        )
        admitted_at = time.time()
        # the second Job is queued too, and nobody admits it
        never = wait_until(
            lambda: jobs(devcluster, namespace, "kbatch.io/task-id=times_out"), timeout=120, what="2nd Job"
        )[0]
        assert never.spec.suspend is True and never.metadata.labels[QUEUE_LABEL] == "team-a"
        run.wait()
    finally:
        run.kill()
    out = run.output()
    states = airflow_env.task_states(dag_id)
    assert states[("admitted", -1)][0] == "success", out[-6000:]
    assert states[("times_out", -1)][0] == "failed", out[-6000:]

    assert "is queued (suspended), waiting for admission" in out
    waited = re.search(r"job kb-\S+-admitted-\S+ admitted after ([\d.]+)s in the queue", out)
    assert waited, out[-6000:]
    # the whole queue wait, from the suspension (whole-second timestamps), not from the trigger start
    queued_for = admitted_at - admitted.metadata.creation_timestamp.timestamp()
    assert 2.0 <= float(waited.group(1)) <= queued_for + 1, (waited.group(0), queued_for)
    detection = line_time(out, waited.group(0)) - admitted_at
    measured(record_property, "queue_admission_detection_s", detection)
    assert detection < 5

    assert "queue_timeout=3" in out and "stayed queued (suspended)" in out, out[-6000:]
    wait_until(
        lambda: jobs(devcluster, namespace, "kbatch.io/task-id=times_out") == [],
        timeout=60,
        what="the Job that timed out in the queue deleted",
    )
    assert pods_of(devcluster, namespace, never) == []


# --------------------------------------------------------------------------- races of the official provider


@pytest.fixture(scope="module")
def races(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One ``dags test`` of ``kbatch_test_races`` (three tasks in a row). While it runs, the
    ``unschedulable`` task's pod stays Pending until this fixture labels a node for it."""
    namespace = devcluster.namespace("races")
    node = devcluster.core().list_node().items[0].metadata.name
    seen: dict[str, Any] = {}
    stop = threading.Event()

    def act_as_admin() -> None:
        pending_since = None
        while not stop.is_set():
            for j in jobs(devcluster, namespace, "kbatch.io/task-id=unschedulable"):
                pods = pods_of(devcluster, namespace, j)
                if pods and all(p.status.phase == "Pending" and not p.spec.node_name for p in pods):
                    pending_since = pending_since or time.monotonic()
                    seen["pending_pods"] = len(pods)
                if pending_since and time.monotonic() - pending_since >= 6:
                    devcluster.core().patch_node(node, {"metadata": {"labels": {POOL_LABEL: namespace}}})
                    seen["labelled_at"] = time.time()
                    return
            stop.wait(0.3)

    actor = threading.Thread(target=act_as_admin, daemon=True)
    actor.start()
    log = tmp_path_factory.mktemp("races") / "races.log"
    run = Background(
        airflow_env,
        log,
        *("dags", "test", "kbatch_test_races", "2026-01-01", "-c", json.dumps({"namespace": namespace})),
    )
    try:
        rc = run.wait(timeout=300)
    finally:
        run.kill()
        stop.set()
        actor.join(timeout=10)
        devcluster.core().patch_node(node, {"metadata": {"labels": {POOL_LABEL: None}}})
    return {"rc": rc, "output": run.output(), "namespace": namespace, "seen": seen}


def _task_job(devcluster: ClusterHandle, races: dict[str, Any], task_id: str) -> Any:
    found = jobs(devcluster, races["namespace"], f"kbatch.io/task-id={task_id}")
    assert len(found) == 1, [j.metadata.name for j in found]
    return found[0]


def test_race_duplicate_pods_only_the_job_controller_makes_pods(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, races: dict[str, Any]
) -> None:
    assert airflow_env.task_states("kbatch_test_races")[("pod_retries", -1)][0] == "success", races["output"][
        -6000:
    ]
    job = _task_job(devcluster, races, "pod_retries")
    pods = pods_of(devcluster, races["namespace"], job)
    # 4 indexes; indexes 1 and 3 failed once and were retried by the Job controller
    assert job.status.succeeded == 4 and job.status.failed == 2
    assert len(pods) == job.status.succeeded + job.status.failed == 6
    phases = Counter(p.status.phase for p in pods)
    assert phases == {"Succeeded": 4, "Failed": 2}
    succeeded_per_index = Counter(
        p.metadata.labels["batch.kubernetes.io/job-completion-index"]
        for p in pods
        if p.status.phase == "Succeeded"
    )
    assert succeeded_per_index == {"0": 1, "1": 1, "2": 1, "3": 1}, (
        "one successful pod per index, no duplicate"
    )
    for pod in pods:
        owners = pod.metadata.owner_references
        assert len(owners) == 1 and owners[0].uid == job.metadata.uid and owners[0].controller
    xcom = airflow_env.xcom("kbatch_test_races", "pod_retries")
    assert xcom["completed_indexes"] == "0-3" and xcom["results"] == {str(i): {"index": i} for i in range(4)}


def test_race_pods_not_scheduled_yet_do_not_fail_the_task(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, races: dict[str, Any]
) -> None:
    out = races["output"]
    assert "labelled_at" in races["seen"], f"the pod never waited unscheduled: {races['seen']}\n{out[-6000:]}"
    assert airflow_env.task_states("kbatch_test_races")[("unschedulable", -1)] == ("success", 1), out[-6000:]
    job = _task_job(devcluster, races, "unschedulable")
    assert condition(job, "Complete") is not None
    # the wait went on while the pod was Pending, and said so
    assert re.search(r"unschedulable-\S+: indexes 0/2 done, 0 failed, 0 running, 1 pending", out), out[-6000:]
    # ... and why, from the scheduler's Warning event
    assert re.search(r"is pending: FailedScheduling: 0/\d+ nodes are available", out), out[-6000:]
    # the Job started well before a node could take its pod: the task waited through it
    assert job.status.start_time.timestamp() < races["seen"]["labelled_at"] - 5


def test_race_parallelism_above_completions_returns_promptly(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, races: dict[str, Any], record_property: Any
) -> None:
    out = races["output"]
    assert airflow_env.task_states("kbatch_test_races")[("wide", -1)][0] == "success", out[-6000:]
    job = _task_job(devcluster, races, "wide")
    assert job.spec.parallelism == 5 and job.spec.completions == 2
    assert condition(job, "Complete") is not None and job.status.succeeded == 2
    assert len(pods_of(devcluster, races["namespace"], job)) == 2
    # the task returns as soon as the Job is Complete (completionTime has second resolution)
    finished = line_time(out, "[DAG TEST] end task task_id=wide")
    lag = finished - job.status.completion_time.timestamp()
    measured(record_property, "wide_task_end_after_completion_s", lag)
    assert lag < 5


def test_rendered_fields_hold_the_created_job_manifest(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, races: dict[str, Any]
) -> None:
    with airflow_env.db() as db:
        row = db.execute(
            "select rendered_fields from rendered_task_instance_fields where dag_id=? and task_id=?"
            " order by rowid desc limit 1",
            ("kbatch_test_races", "wide"),
        ).fetchone()
    assert row is not None
    rendered = json.loads(row[0])
    manifest = rendered["job_manifest"]
    assert manifest["kind"] == "Job" and manifest["apiVersion"] == "batch/v1"
    assert rendered["namespace"] == races["namespace"]  # templated from the run's params
    job = _task_job(devcluster, races, "wide")
    assert manifest["metadata"]["name"] == job.metadata.name
    assert manifest["metadata"]["labels"] == job.metadata.labels
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/example/kbatch-worker:0.1.0"
    assert container["command"] == ["python", "-m", "airflow_provider_kbatch.examples.square"]
    created = devcluster.api().sanitize_for_serialization(job)["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == created["env"], "the rendered manifest is the one that was created"
    assert manifest["metadata"]["annotations"] == job.metadata.annotations


# --------------------------------------------------------------------------- validation


@pytest.mark.timeout(300)
def test_invalid_stage_fails_before_submission_naming_every_field(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, namespace: str
) -> None:
    dag_id = "kbatch_test_invalid"
    proc = airflow_env.dags_test(dag_id, conf={"namespace": namespace})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    state, try_number = airflow_env.task_states(dag_id)[("invalid", -1)]
    assert (state, try_number) == ("failed", 1), (
        "an invalid stage cannot succeed on retry: retries=1 must not apply"
    )
    for field in (
        "backoff_limit_per_index",
        "min_success_ratio",
        "completion_mode='NonIndexed'",
        "got 1.5",
        "end_in_triggerer: must be True, False or None, got 'yes'",
    ):
        assert field in out, f"{field} not named:\n{out[-4000:]}"
    assert jobs(devcluster, namespace, "") == [], "nothing may be sent to the cluster"
    config_maps = devcluster.core().list_namespaced_config_map(namespace, label_selector=MANAGED).items
    assert config_maps == [], "not even a ledger entry"
