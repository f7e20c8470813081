"""KbatchJobSensor (poke, reschedule, deferrable; by name and by label selector) and the lifecycle
operators (suspend, resume, delete), run by ``airflow dags test`` against Jobs the test creates on
the real local control plane.

The test Jobs' pods wait for a marker file before exiting (the process node runs them as local
processes), so a test decides when a Job finishes: the sensor is seen waiting first, then the
marker is written. ``airflow dags test`` runs in the background with its output in a file.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.sensors.job import KbatchJobSensor
from tests.conftest import ClusterHandle, dump, wait_until
from tests.e2e.dagstest import DagsTest

# A pod: wait for the marker file (if one is given), then exit with the given code.
WAITER = (
    "import os, sys, time\n"
    "marker, code = sys.argv[1], int(sys.argv[2])\n"
    "while marker and not os.path.exists(marker):\n"
    "    time.sleep(0.2)\n"
    "print('index', os.environ.get('JOB_COMPLETION_INDEX'), 'exits', code, flush=True)\n"
    "sys.exit(code)\n"
)
FAIL_JOB_CODE = 42
TEST_LABEL = "kbatch.io/e2e"


@pytest.fixture
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("markers")
    path.chmod(0o777)
    return path


def create_job(
    devcluster: ClusterHandle,
    namespace: str,
    name: str,
    *,
    marker: Path | None = None,
    exit_code: int = 0,
    completions: int = 1,
    labels: dict[str, str] | None = None,
    fail_job_code: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "completions": completions,
        "parallelism": completions,
        "completionMode": "Indexed",
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 3600,
        "template": {
            "metadata": {"labels": labels or {}},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {
                        "name": "main",
                        "image": "python:3.11-slim",
                        "command": ["python", "-c", WAITER, str(marker or ""), str(exit_code)],
                    }
                ],
            },
        },
    }
    if fail_job_code is not None:
        spec["podFailurePolicy"] = {
            "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [fail_job_code]}}]
        }
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }
    return devcluster.batch().create_namespaced_job(namespace, body).to_dict()


def condition(devcluster: ClusterHandle, namespace: str, name: str, kind: str) -> Any:
    job = devcluster.batch().read_namespaced_job(name, namespace)
    found = [c for c in job.status.conditions or () if c.type == kind and c.status == "True"]
    return found[0] if found else None


def pods_of(devcluster: ClusterHandle, namespace: str, name: str) -> list[Any]:
    return (
        devcluster.core()
        .list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}")
        .items
    )


def running_pods(devcluster: ClusterHandle, namespace: str, name: str, count: int) -> None:
    wait_until(
        lambda: (
            len([p for p in pods_of(devcluster, namespace, name) if p.status.phase == "Running"]) == count
        ),
        timeout=60,
        what=f"{count} running pods of {name}",
    )


def report(run: DagsTest, devcluster: ClusterHandle, namespace: str) -> str:
    jobs = devcluster.batch().list_namespaced_job(namespace).to_dict()
    return f"{run.output()[-8000:]}\n--- jobs\n{dump(jobs)}"


# --------------------------------------------------------------------------- sensor: success

# What proves the sensor waited (in its mode) before the Job finished.
WAITING = {
    "poke": ("output", "not finished yet"),
    "reschedule": ("state", "up_for_reschedule"),
    "deferrable": ("output", "[DAG TEST] running trigger in line"),
}


def waiting(run: DagsTest, mode: str, *, count: int = 1) -> None:
    how, what = WAITING[mode]
    if how == "state":
        run.wait_state("wait", what)
    else:
        run.wait_for(what, count=count)


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_waits_for_a_running_job_to_complete(
    mode, airflow_env, background, devcluster, namespace, markers
):
    marker = markers / f"{mode}-done"
    create_job(devcluster, namespace, "etl", marker=marker, completions=2)
    running_pods(devcluster, namespace, "etl", 2)
    run = background(f"kbatch_test_sensor_{mode}", namespace=namespace, job_name="etl")
    waiting(run, mode)
    assert condition(devcluster, namespace, "etl", "Complete") is None
    marker.touch()
    assert run.finish() == 0, report(run, devcluster, namespace)
    assert airflow_env.task_states(f"kbatch_test_sensor_{mode}")[("wait", -1)] == ("success", 1)
    assert condition(devcluster, namespace, "etl", "Complete") is not None
    output = run.output()
    assert "not finished yet" in output
    if mode == "reschedule":
        assert _reschedules(airflow_env, "kbatch_test_sensor_reschedule") >= 1
    if mode == "deferrable":
        assert output.count("[DAG TEST] running trigger in line") == 1  # one watch, no polling loop
    # the sensor does not own the Job: it is still there, with its pods
    assert len(pods_of(devcluster, namespace, "etl")) == 2


def _reschedules(airflow_env: Any, dag_id: str) -> int:
    with airflow_env.db() as db:
        (count,) = db.execute(
            "select count(*) from task_reschedule r join task_instance t on t.id = r.ti_id "
            "where t.dag_id = ? and t.task_id = 'wait'",
            (dag_id,),
        ).fetchone()
    return int(count)


# --------------------------------------------------------------------------- sensor: failure


@pytest.mark.parametrize(
    ("mode", "exit_code", "while_waiting", "expected_try"),
    [
        pytest.param("poke", 3, True, 2, id="poke-backoff-limit-retried"),
        pytest.param("reschedule", FAIL_JOB_CODE, False, 1, id="reschedule-failjob-not-retried"),
        pytest.param("deferrable", FAIL_JOB_CODE, True, 1, id="deferrable-failjob-not-retried"),
        pytest.param("deferrable", 3, True, 2, id="deferrable-backoff-limit-retried"),
    ],
)
def test_sensor_fails_when_the_job_fails(
    mode, exit_code, while_waiting, expected_try, airflow_env, background, devcluster, namespace, markers
):
    marker = markers / f"{mode}-{exit_code}-go"
    create_job(devcluster, namespace, "etl", marker=marker, exit_code=exit_code, fail_job_code=FAIL_JOB_CODE)
    if not while_waiting:  # the Job has already failed when the sensor looks
        marker.touch()
        wait_until(lambda: condition(devcluster, namespace, "etl", "Failed"), timeout=60, what="job failed")
    run = background(f"kbatch_test_sensor_{mode}", namespace=namespace, job_name="etl")
    if while_waiting:
        waiting(run, mode)
        marker.touch()
    assert run.finish() != 0, report(run, devcluster, namespace)
    assert airflow_env.task_states(f"kbatch_test_sensor_{mode}")[("wait", -1)] == ("failed", expected_try)
    failed = condition(devcluster, namespace, "etl", "Failed")
    assert failed.reason == ("PodFailurePolicy" if exit_code == FAIL_JOB_CODE else "BackoffLimitExceeded")
    output = run.output()
    assert f"{namespace}/etl" in output and failed.reason in output


# --------------------------------------------------------------------------- sensor: label selector


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_sensor_by_label_selector_waits_for_every_matching_job(
    mode, airflow_env, background, devcluster, namespace, markers
):
    labels = {TEST_LABEL: f"sel-{mode}", "stage": "ingest"}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    first, second = markers / f"{mode}-a", markers / f"{mode}-b"
    create_job(devcluster, namespace, "part-a", marker=first, labels=labels)
    create_job(devcluster, namespace, "part-b", marker=second, labels=labels)
    # a failed Job that shares one label but not the selector: ignored
    create_job(devcluster, namespace, "other", exit_code=3, labels={TEST_LABEL: f"sel-{mode}"})
    wait_until(lambda: condition(devcluster, namespace, "other", "Failed"), timeout=60, what="other failed")
    running_pods(devcluster, namespace, "part-a", 1)
    running_pods(devcluster, namespace, "part-b", 1)
    run = background(f"kbatch_test_sensor_selector_{mode}", namespace=namespace, label_selector=selector)
    waiting(run, mode)
    first.touch()
    wait_until(lambda: condition(devcluster, namespace, "part-a", "Complete"), timeout=60, what="part-a done")
    if mode == "deferrable":  # the watch of part-a ended; the sensor now watches part-b
        waiting(run, mode, count=2)
    else:  # two more pokes: part-a is no longer reported unfinished, part-b still is
        a_before = run.output().count(f"{namespace}/part-a not finished yet")
        b_before = run.output().count(f"{namespace}/part-b not finished yet")
        run.wait_for(f"{namespace}/part-b not finished yet", count=b_before + 2)
        assert run.output().count(f"{namespace}/part-a not finished yet") <= a_before + 1
    assert run.proc.poll() is None, "the sensor must still wait for part-b"
    assert airflow_env.task_states(f"kbatch_test_sensor_selector_{mode}")[("wait", -1)][0] != "success"
    second.touch()
    assert run.finish() == 0, report(run, devcluster, namespace)
    assert airflow_env.task_states(f"kbatch_test_sensor_selector_{mode}")[("wait", -1)] == ("success", 1)


def test_deferrable_sensor_waits_for_a_job_created_later(airflow_env, background, devcluster, namespace):
    run = background("kbatch_test_sensor_deferrable", namespace=namespace, job_name="late")
    run.wait_for("no job late in")
    run.wait_for("[DAG TEST] running trigger in line")  # the timer, in the triggerer
    create_job(devcluster, namespace, "late")
    assert run.finish() == 0, report(run, devcluster, namespace)
    assert airflow_env.task_states("kbatch_test_sensor_deferrable")[("wait", -1)] == ("success", 1)


# --------------------------------------------------------------------------- lifecycle operators


def test_suspend_stops_the_pods_and_resume_completes_the_job(
    airflow_env, background, devcluster, namespace, markers
):
    marker = markers / "resume-done"
    create_job(devcluster, namespace, "etl", marker=marker, completions=3)
    running_pods(devcluster, namespace, "etl", 3)

    suspend = background("kbatch_test_lifecycle_suspend", namespace=namespace, job_name="etl")
    assert suspend.finish() == 0, report(suspend, devcluster, namespace)
    assert airflow_env.xcom("kbatch_test_lifecycle_suspend", "suspend") == ["etl"]
    job = devcluster.batch().read_namespaced_job("etl", namespace)
    assert job.spec.suspend is True
    wait_until(
        lambda: condition(devcluster, namespace, "etl", "Suspended"), timeout=60, what="Suspended condition"
    )
    wait_until(
        lambda: not pods_of(devcluster, namespace, "etl"), timeout=60, what="pods of the suspended job gone"
    )
    job = devcluster.batch().read_namespaced_job("etl", namespace)
    assert not job.status.active and not job.status.succeeded, dump(job.to_dict()["status"])
    assert condition(devcluster, namespace, "etl", "Complete") is None

    marker.touch()  # from now on a pod completes at once: only a resumed Job gets there
    resume = background("kbatch_test_lifecycle_resume", namespace=namespace, job_name="etl")
    assert resume.finish() == 0, report(resume, devcluster, namespace)
    states = airflow_env.task_states("kbatch_test_lifecycle_resume")
    assert states[("resume", -1)] == ("success", 1) and states[("wait", -1)] == ("success", 1)
    job = devcluster.batch().read_namespaced_job("etl", namespace)
    assert job.spec.suspend is False and job.status.completed_indexes == "0-2"
    assert condition(devcluster, namespace, "etl", "Complete") is not None


def test_delete_by_label_selector_removes_jobs_and_pods_in_the_foreground(
    airflow_env, background, devcluster, namespace, markers
):
    labels = {TEST_LABEL: "delete-me"}
    never = markers / "never"  # the pods run until they are deleted
    for name in ("del-a", "del-b"):
        create_job(devcluster, namespace, name, marker=never, completions=2, labels=labels)
    create_job(devcluster, namespace, "keep", marker=never, labels={TEST_LABEL: "keep"})
    for name, count in (("del-a", 2), ("del-b", 2), ("keep", 1)):
        running_pods(devcluster, namespace, name, count)

    events: list[tuple[str, str, str, list[str], int]] = []  # (kind, type, name, finalizers, rv)
    stop = threading.Event()
    threads = [
        threading.Thread(target=_record, args=(devcluster, namespace, kind, events, stop), daemon=True)
        for kind in ("Job", "Pod")
    ]
    for thread in threads:
        thread.start()
    try:
        run = background(
            "kbatch_test_lifecycle_delete", namespace=namespace, label_selector=f"{TEST_LABEL}=delete-me"
        )
        assert run.finish() == 0, report(run, devcluster, namespace)
        assert sorted(airflow_env.xcom("kbatch_test_lifecycle_delete", "delete")) == ["del-a", "del-b"]
        wait_until(
            lambda: (
                {j.metadata.name for j in devcluster.batch().list_namespaced_job(namespace).items} == {"keep"}
            ),
            timeout=90,
            what="only the unlabelled job left",
        )
        wait_until(
            lambda: (
                not pods_of(devcluster, namespace, "del-a") and not pods_of(devcluster, namespace, "del-b")
            ),
            timeout=60,
            what="pods of the deleted jobs gone",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert len(pods_of(devcluster, namespace, "keep")) == 1
    assert [p.status.phase for p in pods_of(devcluster, namespace, "keep")] == ["Running"]
    for name in ("del-a", "del-b"):
        job_events = [(t, f) for k, t, n, f, _ in events if k == "Job" and n == name]
        assert any("foregroundDeletion" in f for t, f in job_events if t == "MODIFIED"), job_events
        (gone,) = [rv for k, t, n, _, rv in events if (k, t, n) == ("Job", "DELETED", name)]
        pods_gone = [
            rv for k, t, n, _, rv in events if (k, t) == ("Pod", "DELETED") and n.startswith(f"{name}-")
        ]
        assert len(pods_gone) >= 2, events
        # resourceVersions of the local etcd are ordered revisions
        assert max(pods_gone) < gone, "foreground propagation: the pods are deleted before their Job"


def _record(
    devcluster: ClusterHandle, namespace: str, kind: str, events: list[Any], stop: threading.Event
) -> None:
    from kubernetes import watch

    api = devcluster.batch().list_namespaced_job if kind == "Job" else devcluster.core().list_namespaced_pod
    resource_version = api(namespace).metadata.resource_version
    while not stop.is_set():
        for event in watch.Watch().stream(
            api, namespace, resource_version=resource_version, timeout_seconds=2
        ):
            obj = event["object"]
            resource_version = obj.metadata.resource_version
            finalizers = list(obj.metadata.finalizers or [])
            events.append((kind, event["type"], obj.metadata.name, finalizers, int(resource_version)))


# --------------------------------------------------------------------------- kill while deferred


def _defer_and_kill(namespace: str, job_name: str, on_kill_action: str | None) -> None:
    """Defer a sensor, rebuild its trigger from the serialized kwargs as the triggerer does, run
    it, then cancel it and call ``on_kill()``: what the triggerer does when a user kills the task."""
    from airflow.sdk.exceptions import TaskDeferred

    sensor = KbatchJobSensor(task_id="wait", namespace=namespace, job_name=job_name, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    path, kwargs = deferred.value.trigger.serialize()
    if on_kill_action is not None:  # the control: the same trigger as the operator's default
        kwargs = {**kwargs, "on_kill_action": on_kill_action}
    module, cls = path.rsplit(".", 1)
    trigger = getattr(importlib.import_module(module), cls)(**json.loads(json.dumps(kwargs)))

    async def run_then_kill() -> None:
        events = trigger.run()
        with pytest.raises(asyncio.TimeoutError):  # the Job is still running: no event
            await asyncio.wait_for(events.__anext__(), timeout=3)
        await events.aclose()
        await trigger.on_kill()

    asyncio.run(run_then_kill())


def test_a_killed_deferred_sensor_leaves_the_job_running(devcluster, namespace, markers):
    marker = markers / "kill-done"
    create_job(devcluster, namespace, "watched", marker=marker, completions=2)
    create_job(devcluster, namespace, "control", marker=marker)
    running_pods(devcluster, namespace, "watched", 2)
    running_pods(devcluster, namespace, "control", 1)

    _defer_and_kill(namespace, "watched", None)  # the sensor's own trigger
    _defer_and_kill(namespace, "control", "delete")  # proves on_kill really ran against the cluster

    wait_until(
        lambda: (
            not devcluster.batch()
            .list_namespaced_job(namespace, field_selector="metadata.name=control")
            .items
        ),
        timeout=60,
        what="the control job deleted by its on_kill",
    )
    job = devcluster.batch().read_namespaced_job("watched", namespace)
    assert job.metadata.deletion_timestamp is None and not job.spec.suspend
    assert [p.status.phase for p in pods_of(devcluster, namespace, "watched")] == ["Running", "Running"]
    marker.touch()
    wait_until(
        lambda: condition(devcluster, namespace, "watched", "Complete"), timeout=60, what="watched completes"
    )


@pytest.mark.timeout(600)
def test_marking_the_deferred_sensor_failed_in_a_deployment_keeps_the_job(
    devcluster, namespace, markers, airflow_deployment
):
    """The real path: scheduler, triggerer and api-server (the session's shared deployment on
    PostgreSQL); the user marks the deferred sensor failed through the REST API; the triggerer
    cancels the trigger and calls its ``on_kill``, which keeps the Job it only watched."""
    import urllib.request

    deployment = airflow_deployment
    dag_id, run_id = "kbatch_test_sensor_deferrable", f"kill-{secrets.token_hex(3)}"
    marker = markers / "deployment-kill"
    create_job(devcluster, namespace, "watched", marker=marker, completions=2)
    running_pods(devcluster, namespace, "watched", 2)
    try:
        deployment.wait_dag(dag_id, timeout=180)
        deployment.unpause(dag_id)
        deployment.trigger(dag_id, run_id, conf={"namespace": namespace, "job_name": "watched"})
        wait_until(
            lambda: deployment.task_instances(dag_id, run_id).get(("wait", -1), (None,))[0] == "deferred",
            timeout=180,
            what="the sensor deferred",
        )
        # the triggerer must be running the trigger (marking failed before that kills nothing)
        wait_until(
            lambda: _logged(
                deployment.home, lambda line: "starting" in line and run_id in line and "trigger" in line
            ),
            timeout=120,
            what="the triggerer running the sensor's trigger",
        )
        request = urllib.request.Request(
            f"{deployment.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/wait",
            data=json.dumps({"new_state": "failed"}).encode(),
            headers={"Content-Type": "application/json"},
            method="PATCH",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        wait_until(
            lambda: "invoking on_kill" in deployment.task_logs(dag_id, run_id, "wait"),
            timeout=60,
            what="the triggerer calling the trigger's on_kill",
        )
        assert deployment.task_instances(dag_id, run_id)[("wait", -1)][0] == "failed"
        job = devcluster.batch().read_namespaced_job("watched", namespace)
        assert job.metadata.deletion_timestamp is None and not job.spec.suspend
        assert [p.status.phase for p in pods_of(devcluster, namespace, "watched")] == ["Running", "Running"]
    except BaseException:
        print(deployment.report(dag_id))  # noqa: T201 -- the deployment's logs, for the failure report
        raise
    finally:
        deployment.pause(dag_id)
    marker.touch()
    wait_until(
        lambda: condition(devcluster, namespace, "watched", "Complete"), timeout=60, what="watched completes"
    )


def _logged(home: Path, match: Any) -> bool:
    """A line of the triggerer's output or of a task/trigger log file under ``home`` matches."""
    files = [home / "triggerer.out", *(home / "logs").rglob("*.log")]
    for path in files:
        try:
            if any(match(line) for line in path.read_text(errors="replace").splitlines()):
                return True
        except FileNotFoundError:
            continue
    return False
