"""The process node against the real control plane: real Job, scheduler, PV binder and disruption
controllers, with containers run as local processes.

Each test uses a fresh namespace. Commands run with the node's own interpreter (``python``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.devcluster import faults
from tests.conftest import ClusterHandle, dump, wait_until

pytestmark = pytest.mark.integration

INDEX_ENV = {
    "name": "JOB_COMPLETION_INDEX",
    "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
    },
}


# ---------------------------------------------------------------------------------------- helpers
def _plain(api: Any, obj: Any) -> dict[str, Any]:
    return dict(api.sanitize_for_serialization(obj))


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "python:3.11-slim", "command": ["python", "-c", script], **extra}


def job_manifest(
    name: str,
    containers: list[dict[str, Any]],
    *,
    pod: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    template_spec = {"restartPolicy": "Never", "containers": containers, **(pod or {})}
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": template_spec}, **spec},
    }
    return body


def pod_manifest(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": containers, **spec},
    }


def claim(name: str, mode: str = "ReadWriteOnce") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}},
    }


def finished_job(cluster: ClusterHandle, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    """Wait for the Job's terminal condition (``Complete`` or ``Failed`` with status "True")."""
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal last
        last = _plain(cluster.api(), cluster.batch().read_namespaced_job(name, namespace))
        for cond in last.get("status", {}).get("conditions") or []:
            if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
                return last
        return None

    try:
        return wait_until(check, timeout=timeout, interval=0.3, what=f"job {name} to finish")
    except AssertionError as err:
        pods = job_pods(cluster, namespace, name)
        raise AssertionError(f"{err}\njob: {dump(last.get('status'))}\npods: {dump(pods)}") from None


def job_pods(cluster: ClusterHandle, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = cluster.core().list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={name}"
    )
    return [_plain(cluster.api(), p) for p in pods.items]


def pod_phase(
    cluster: ClusterHandle, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 60
) -> Any:
    def check() -> Any:
        pod = _plain(cluster.api(), cluster.core().read_namespaced_pod(name, namespace))
        return pod if pod.get("status", {}).get("phase") in phases else None

    try:
        return wait_until(check, timeout=timeout, interval=0.2, what=f"pod {name} in {phases}")
    except AssertionError as err:
        pod = _plain(cluster.api(), cluster.core().read_namespaced_pod(name, namespace))
        raise AssertionError(f"{err}\n{dump(pod.get('status'))}") from None


def terminated(pod: dict[str, Any], name: str | None = None, *, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    statuses = pod["status"][key]
    status = statuses[0] if name is None else next(s for s in statuses if s["name"] == name)
    return dict(status["state"]["terminated"])


def pod_log(core: Any, name: str, namespace: str, **options: Any) -> str:
    """Pod logs through the API server, as text. (kubernetes 36's ``read_namespaced_pod_log``
    returns the repr of the bytes, kubernetes-client/python#2596: read the raw response.)"""
    response = core.read_namespaced_pod_log(name, namespace, _preload_content=False, **options)
    return str(response.data.decode("utf-8"))


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


@pytest.fixture
def ns(devcluster: ClusterHandle) -> str:
    return devcluster.namespace("pn")


class PodRecorder:
    """Keeps the last version of every pod of a namespace seen by a watch (a pod deleted right
    after it failed can still be inspected)."""

    def __init__(self, cluster: ClusterHandle, namespace: str) -> None:
        from kubernetes import watch

        self.last: dict[str, dict[str, Any]] = {}
        self._watch = watch.Watch()
        self._cluster = cluster
        self._namespace = namespace
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        core = self._cluster.core()
        try:
            for event in self._watch.stream(core.list_namespaced_pod, self._namespace, timeout_seconds=300):
                obj = _plain(self._cluster.api(), event["object"])
                self.last[obj["metadata"]["name"]] = obj
        except Exception:
            # Watch.stop() only takes effect at the next event: a stopped recorder's stream may
            # still be open when the cluster goes down at the end of the session.
            if not self._stopped:
                raise

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()


@pytest.fixture
def recorder(devcluster: ClusterHandle, ns: str) -> Iterator[PodRecorder]:
    rec = PodRecorder(devcluster, ns)
    time.sleep(0.2)  # let the watch start before the test creates pods
    yield rec
    rec.stop()


# ---------------------------------------------------------------------------------------- Jobs
INDEX_SCRIPT = """
import os, socket
index = os.environ["JOB_COMPLETION_INDEX"]
with open(f"/data/index-{index}", "w") as f:
    f.write(f"{index} {socket.gethostname()} {os.environ['HOSTNAME']}")
with open("/dev/termination-log", "w") as f:
    f.write(f"index={index}")
print("wrote", index)
"""


def test_indexed_job_each_index_sees_its_own_index(devcluster: ClusterHandle, ns: str) -> None:
    core, batch = devcluster.core(), devcluster.batch()
    core.create_namespaced_persistent_volume_claim(ns, claim("data"))
    manifest = job_manifest(
        "idx",
        [
            container(
                "work", INDEX_SCRIPT, env=[INDEX_ENV], volumeMounts=[{"name": "data", "mountPath": "/data"}]
            )
        ],
        pod={"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]},
        completionMode="Indexed",
        completions=5,
        parallelism=5,
    )
    batch.create_namespaced_job(ns, manifest)
    job = finished_job(devcluster, ns, "idx")
    assert [c["type"] for c in job["status"]["conditions"] if c["status"] == "True"] == [
        "SuccessCriteriaMet",
        "Complete",
    ]
    assert job["status"]["completedIndexes"] == "0-4"
    pods = job_pods(devcluster, ns, "idx")
    succeeded = [p for p in pods if p["status"]["phase"] == "Succeeded"]
    assert len(succeeded) == 5
    for pod in succeeded:
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert terminated(pod)["message"] == f"index={index}"
        assert terminated(pod)["reason"] == "Completed"

    # The next Job reads what the first one left on the claim.
    reader = "import glob\nfor p in sorted(glob.glob('/data/index-*')):\n    print(open(p).read())"
    batch.create_namespaced_job(
        ns,
        job_manifest(
            "reader",
            [
                container(
                    "read", reader, volumeMounts=[{"name": "data", "mountPath": "/data", "readOnly": True}]
                )
            ],
            pod={"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]},
        ),
    )
    assert "Complete" in json.dumps(finished_job(devcluster, ns, "reader")["status"]["conditions"])
    pod_name = job_pods(devcluster, ns, "reader")[0]["metadata"]["name"]
    lines = pod_log(core, pod_name, ns).splitlines()
    assert [line.split()[0] for line in lines] == ["0", "1", "2", "3", "4"]
    for line in lines:
        index, hostname, env_hostname = line.split()
        assert hostname == env_hostname == f"idx-{index}"  # spec.hostname of an Indexed Job's pod


def test_backoff_limit_per_index(devcluster: ClusterHandle, ns: str) -> None:
    script = "import os, sys\nsys.exit(3 if os.environ['JOB_COMPLETION_INDEX'] == '2' else 0)"
    manifest = job_manifest(
        "per-index",
        [container("work", script, env=[INDEX_ENV])],
        completionMode="Indexed",
        completions=4,
        parallelism=4,
        backoffLimitPerIndex=1,
    )
    manifest["spec"].pop("backoffLimit")
    devcluster.batch().create_namespaced_job(ns, manifest)
    job = finished_job(devcluster, ns, "per-index")
    failed = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed and failed[0]["status"] == "True" and failed[0]["reason"] == "FailedIndexes", dump(
        job["status"]
    )
    assert job["status"]["failedIndexes"] == "2"
    assert job["status"]["completedIndexes"] == "0,1,3"  # the controller writes ranges from 3 up
    index_two = [
        p
        for p in job_pods(devcluster, ns, "per-index")
        if p["metadata"]["labels"].get("batch.kubernetes.io/job-completion-index") == "2"
    ]
    assert len(index_two) == 2  # tried once more
    assert {terminated(p)["exitCode"] for p in index_two} == {3}


def test_pod_failure_policy_fail_job_on_exit_code(devcluster: ClusterHandle, ns: str) -> None:
    manifest = job_manifest(
        "fail-fast",
        [container("work", "import sys; print('giving up'); sys.exit(42)")],
        backoffLimit=6,
        podFailurePolicy={
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "work", "operator": "In", "values": [42]},
                }
            ]
        },
    )
    devcluster.batch().create_namespaced_job(ns, manifest)
    job = finished_job(devcluster, ns, "fail-fast")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "PodFailurePolicy", dump(job["status"])
    pods = job_pods(devcluster, ns, "fail-fast")
    assert len(pods) == 1 and terminated(pods[0])["exitCode"] == 42


def test_killed_container_exit_code_reaches_pod_failure_policy(devcluster: ClusterHandle, ns: str) -> None:
    """Fault injection: the node ends a running container with a chosen exit code."""
    manifest = job_manifest(
        "killed",
        [container("work", "import time; time.sleep(120)")],
        backoffLimit=6,
        podFailurePolicy={
            "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
        },
    )
    devcluster.batch().create_namespaced_job(ns, manifest)
    pod = wait_until(
        lambda: next(
            (p for p in job_pods(devcluster, ns, "killed") if p["status"].get("phase") == "Running"), None
        ),
        timeout=60,
        what="running pod",
    )
    result = faults.kill_container(devcluster.node_state_dir, ns, pod["metadata"]["name"], exit_code=42)
    assert result["container"] == "work"
    job = finished_job(devcluster, ns, "killed")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert terminated(job_pods(devcluster, ns, "killed")[0])["exitCode"] == 42


def test_deleting_a_running_job_leaves_no_process(devcluster: ClusterHandle, ns: str) -> None:
    marker = f"kbatch-marker-{uuid.uuid4().hex}"
    # The shell ignores SIGTERM and has a child that leaves the process group: only SIGKILL of the
    # session ends them, after the grace period.
    script = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"child = 'import time; time.sleep(300)  # {marker}'\n"
        "subprocess.Popen([sys.executable, '-c', child], preexec_fn=os.setpgrp)\n"
        "time.sleep(300)\n"
    )
    manifest = job_manifest(
        "doomed",
        [container("work", script + f"# {marker}")],
        pod={"terminationGracePeriodSeconds": 2},
        completions=2,
        parallelism=2,
    )
    devcluster.batch().create_namespaced_job(ns, manifest)
    wait_until(lambda: len(processes_with(marker)) >= 4, timeout=60, what="two pods, each with two processes")
    devcluster.batch().delete_namespaced_job("doomed", ns, propagation_policy="Foreground")
    wait_until(lambda: not job_pods(devcluster, ns, "doomed"), timeout=60, what="pods deleted")
    wait_until(lambda: not processes_with(marker), timeout=10, what="no process left")
    from kubernetes.client.exceptions import ApiException

    def job_gone() -> bool:
        try:
            devcluster.batch().read_namespaced_job("doomed", ns)
            return False
        except ApiException as err:
            return err.status == 404

    wait_until(job_gone, timeout=60, what="job deleted (foreground)")
    assert processes_with(marker) == []


def test_drain_evicts_with_disruption_target_and_ignore_rule_does_not_count(
    devcluster: ClusterHandle, ns: str, recorder: PodRecorder
) -> None:
    core = devcluster.core()
    core.create_namespaced_persistent_volume_claim(ns, claim("state", "ReadWriteMany"))
    # The first pod waits (and gets evicted); its replacement finds the marker and succeeds.
    script = (
        "import os, time\n"
        "if os.path.exists('/state/started'):\n"
        "    raise SystemExit(0)\n"
        "open('/state/started', 'w').close()\n"
        "time.sleep(120)\n"
    )
    manifest = job_manifest(
        "drained",
        [container("work", script, volumeMounts=[{"name": "state", "mountPath": "/state"}])],
        pod={
            "volumes": [{"name": "state", "persistentVolumeClaim": {"claimName": "state"}}],
            "terminationGracePeriodSeconds": 5,
        },
        backoffLimit=0,
        podFailurePolicy={"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
    )
    devcluster.batch().create_namespaced_job(ns, manifest)
    first = wait_until(
        lambda: next(
            (p for p in job_pods(devcluster, ns, "drained") if p["status"].get("phase") == "Running"), None
        ),
        timeout=60,
        what="first pod running",
    )
    node = first["spec"]["nodeName"]
    try:
        evicted = faults.drain(devcluster.kubeconfig, node, timeout=60)
        assert f"{ns}/{first['metadata']['name']}" in evicted
        job = finished_job(devcluster, ns, "drained")
    finally:
        faults.uncordon(devcluster.kubeconfig, node)
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"]), dump(
        job
    )
    assert not job["status"].get("failed"), "an ignored disruption must not count as a failure"
    last = recorder.last[first["metadata"]["name"]]
    conditions = {c["type"]: c for c in last["status"]["conditions"]}
    assert conditions["DisruptionTarget"]["status"] == "True"
    assert conditions["DisruptionTarget"]["reason"] == "EvictionByEvictionAPI"
    assert last["status"]["phase"] == "Failed"
    assert terminated(last)["exitCode"] == 143  # SIGTERM within the grace period
    survivors = [p for p in job_pods(devcluster, ns, "drained") if p["status"]["phase"] == "Succeeded"]
    assert len(survivors) == 1 and survivors[0]["spec"]["nodeName"] != node


# ---------------------------------------------------------------------------------------- pods
def test_logs_through_the_api_server_also_followed(devcluster: ClusterHandle, ns: str) -> None:
    core = devcluster.core()
    script = (
        "import sys, time\n"
        "for i in range(6):\n"
        "    print(f'line {i}', flush=True)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
        "    time.sleep(0.5)\n"
    )
    core.create_namespaced_pod(ns, pod_manifest("talker", [container("c", script)]))
    pod_phase(devcluster, ns, "talker", ("Running", "Succeeded"))
    response = core.read_namespaced_pod_log("talker", ns, follow=True, _preload_content=False)
    seen: list[str] = []
    phase_at_first_line = None
    buffer = b""
    for chunk in response.stream(64):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            seen.append(line.decode())
            if phase_at_first_line is None:
                phase_at_first_line = core.read_namespaced_pod("talker", ns).status.phase
    assert phase_at_first_line == "Running", "follow streamed only after the container ended"
    assert [s for s in seen if s.startswith("line")] == [f"line {i}" for i in range(6)]
    assert [s for s in seen if s.startswith("err")] == [f"err {i}" for i in range(6)]
    pod_phase(devcluster, ns, "talker", ("Succeeded",))
    assert pod_log(core, "talker", ns, tail_lines=2) == "line 5\nerr 5\n"
    assert pod_log(core, "talker", ns, limit_bytes=9) == "line 0\ner"
    stamped = pod_log(core, "talker", ns, timestamps=True).splitlines()
    assert len(stamped) == 12 and all(s.split(" ", 1)[0].endswith("Z") for s in stamped)
    assert pod_log(core, "talker", ns, since_seconds=3600).count("\n") == 12


def test_termination_message_file_and_fallback_to_logs(devcluster: ClusterHandle, ns: str) -> None:
    core = devcluster.core()
    containers = [
        container(
            "file", "open('/tmp/msg', 'w').write('x' * 5000 + 'tail')", terminationMessagePath="/tmp/msg"
        ),
        container(
            "fallback",
            "import sys\nfor i in range(100): print('log line', i)\nsys.exit(7)",
            terminationMessagePolicy="FallbackToLogsOnError",
        ),
    ]
    core.create_namespaced_pod(ns, pod_manifest("messages", containers))
    pod = pod_phase(devcluster, ns, "messages", ("Failed",))
    file_message = terminated(pod, "file")["message"]
    assert len(file_message) == 4096 and file_message.endswith("tail")
    fallback = terminated(pod, "fallback")
    assert fallback["exitCode"] == 7 and fallback["reason"] == "Error"
    assert fallback["message"].splitlines()[-1] == "log line 99"
    assert len(fallback["message"].splitlines()) <= 80


def test_init_containers_run_first_and_a_failing_one_fails_the_pod(
    devcluster: ClusterHandle, ns: str
) -> None:
    core = devcluster.core()
    shared = [{"name": "work", "mountPath": "/work"}]
    core.create_namespaced_pod(
        ns,
        pod_manifest(
            "init-ok",
            [
                container(
                    "main", "print(open('/work/a').read() + open('/work/b').read())", volumeMounts=shared
                )
            ],
            initContainers=[
                container("first", "open('/work/a', 'w').write('1')", volumeMounts=shared),
                container(
                    "second", "open('/work/b', 'w').write(open('/work/a').read() + '2')", volumeMounts=shared
                ),
            ],
            volumes=[{"name": "work", "emptyDir": {}}],
        ),
    )
    core.create_namespaced_pod(
        ns,
        pod_manifest(
            "init-bad",
            [container("main", "print('must not run')")],
            initContainers=[container("broken", "raise SystemExit(5)")],
        ),
    )
    ok = pod_phase(devcluster, ns, "init-ok", ("Succeeded", "Failed"))
    assert ok["status"]["phase"] == "Succeeded", dump(ok["status"])
    assert pod_log(core, "init-ok", ns) == "112\n"
    bad = pod_phase(devcluster, ns, "init-bad", ("Failed",))
    assert terminated(bad, "broken", init=True)["exitCode"] == 5
    main_state = bad["status"]["containerStatuses"][0]["state"]
    assert main_state.get("running") is None and "started" not in json.dumps(main_state)
    initialized = next(c for c in bad["status"]["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False"


def test_sub_path_read_only_and_config_volumes(devcluster: ClusterHandle, ns: str) -> None:
    core = devcluster.core()
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "settings"}, "data": {"app.conf": "mode=fast\n", "other": "x"}}
    )
    core.create_namespaced_persistent_volume_claim(ns, claim("data"))
    script = (
        "import os\n"
        "print(open('/etc/app/app.conf').read().strip())\n"
        "print(sorted(os.listdir('/etc/app')))\n"
        "print(open('/cfg/renamed').read().strip(), oct(os.stat('/cfg/renamed').st_mode & 0o777))\n"
        "open('/out/result', 'w').write('ok')\n"
        "try:\n"
        "    open('/ro/nope', 'w')\n"
        "    print('writable')\n"
        "except OSError as err:\n"
        "    print('read-only', err.errno)\n"
    )
    mounts = [
        {"name": "settings", "mountPath": "/etc/app/app.conf", "subPath": "app.conf"},
        {"name": "picked", "mountPath": "/cfg"},
        {"name": "data", "mountPath": "/out", "subPath": "run-1"},
        {"name": "data", "mountPath": "/ro", "readOnly": True},
    ]
    volumes = [
        {"name": "settings", "configMap": {"name": "settings"}},
        {
            "name": "picked",
            "configMap": {"name": "settings", "items": [{"key": "other", "path": "renamed", "mode": 0o600}]},
        },
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
    ]
    core.create_namespaced_pod(
        ns, pod_manifest("mounts", [container("c", script, volumeMounts=mounts)], volumes=volumes)
    )
    pod = pod_phase(devcluster, ns, "mounts", ("Succeeded", "Failed"))
    logs = pod_log(core, "mounts", ns).splitlines()
    assert pod["status"]["phase"] == "Succeeded", logs
    assert logs[0] == "mode=fast"
    assert logs[1] == "['app.conf']"  # only the subPath file, not the volume
    assert logs[2] == "x 0o600"
    assert logs[3] == "read-only 30"  # EROFS
    verify = "import os\nprint(open('/data/run-1/result').read(), os.path.exists('/data/nope'))"
    core.create_namespaced_pod(
        ns,
        pod_manifest(
            "verify",
            [container("c", verify, volumeMounts=[{"name": "data", "mountPath": "/data"}])],
            volumes=[volumes[2]],
        ),
    )
    pod_phase(devcluster, ns, "verify", ("Succeeded",))
    assert pod_log(core, "verify", ns) == "ok False\n"


def test_secret_env_and_downward_api(devcluster: ClusterHandle, ns: str) -> None:
    core = devcluster.core()
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t", "user": "u"}}
    )
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {
            "name": "MEM_MI",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
        },
        {"name": "GREETING", "value": "hello $(POD) $$(POD)"},
    ]
    script = (
        "import os\n"
        "print(os.environ['TOKEN'], 'MISSING' in os.environ, os.environ['S_user'])\n"
        "print(os.environ['POD'], os.environ['NODE'].startswith('kbatch-node-'), os.environ['MEM_MI'])\n"
        "print(os.environ['GREETING'])\n"
    )
    spec = container(
        "c",
        script,
        env=env,
        envFrom=[{"prefix": "S_", "secretRef": {"name": "creds"}}],
        resources={"limits": {"memory": "300Mi"}},
    )
    core.create_namespaced_pod(ns, pod_manifest("envs", [spec]))
    pod_phase(devcluster, ns, "envs", ("Succeeded",))
    assert pod_log(core, "envs", ns).splitlines() == [
        "s3cr3t False u",
        "envs True 300",
        "hello envs $(POD)",
    ]


def test_missing_secret_waits_then_starts(devcluster: ClusterHandle, ns: str) -> None:
    core = devcluster.core()
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    core.create_namespaced_pod(
        ns, pod_manifest("waits", [container("c", "import os; print(os.environ['TOKEN'])", env=env)])
    )

    def config_error() -> Any:
        pod = core.read_namespaced_pod("waits", ns)
        statuses = pod.status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting and waiting.reason == "CreateContainerConfigError"

    wait_until(config_error, timeout=30, what="CreateContainerConfigError")
    core.create_namespaced_secret(ns, {"metadata": {"name": "later"}, "stringData": {"token": "now"}})
    pod_phase(devcluster, ns, "waits", ("Succeeded",), timeout=30)
    assert pod_log(core, "waits", ns) == "now\n"


def test_restart_policy_on_failure_counts_restarts(devcluster: ClusterHandle, ns: str) -> None:
    core = devcluster.core()
    script = (
        "import os, sys\n"
        "if not os.path.exists('/scratch/tried'):\n"
        "    open('/scratch/tried', 'w').close()\n"
        "    print('first attempt fails')\n"
        "    sys.exit(1)\n"
        "print('second attempt works')\n"
    )
    core.create_namespaced_pod(
        ns,
        pod_manifest(
            "retry",
            [container("c", script, volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}])],
            restartPolicy="OnFailure",
            volumes=[{"name": "scratch", "emptyDir": {}}],
        ),
    )
    pod = pod_phase(devcluster, ns, "retry", ("Succeeded", "Failed"), timeout=90)
    status = pod["status"]["containerStatuses"][0]
    assert pod["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert pod_log(core, "retry", ns) == "second attempt works\n"
    assert pod_log(core, "retry", ns, previous=True) == "first attempt fails\n"


def test_run_as_user_and_fs_group(devcluster: ClusterHandle, ns: str) -> None:
    core = devcluster.core()
    core.create_namespaced_persistent_volume_claim(ns, claim("data"))
    script = (
        "import os\n"
        "open('/data/owned', 'w').write('x')\n"
        "st = os.stat('/data/owned')\n"
        "print(os.getuid(), os.getgid(), sorted(os.getgroups()), st.st_uid, st.st_gid)\n"
    )
    core.create_namespaced_pod(
        ns,
        pod_manifest(
            "user",
            [container("c", script, volumeMounts=[{"name": "data", "mountPath": "/data"}])],
            securityContext={"runAsUser": 1234, "runAsGroup": 2345, "fsGroup": 3456},
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        ),
    )
    pod = pod_phase(devcluster, ns, "user", ("Succeeded", "Failed"))
    logs = pod_log(core, "user", ns)
    assert pod["status"]["phase"] == "Succeeded", logs
    assert logs.split("\n")[0] == "1234 2345 [2345, 3456] 1234 3456"  # setgid claim directory


def test_active_deadline_and_signal_fault(devcluster: ClusterHandle, ns: str) -> None:
    core = devcluster.core()
    core.create_namespaced_pod(
        ns,
        pod_manifest("deadline", [container("c", "import time; time.sleep(120)")], activeDeadlineSeconds=2),
    )
    core.create_namespaced_pod(
        ns, pod_manifest("signalled", [container("c", "import time; time.sleep(120)")])
    )
    pod = pod_phase(devcluster, ns, "deadline", ("Failed",), timeout=40)
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert terminated(pod)["exitCode"] == 143
    pod_phase(devcluster, ns, "signalled", ("Running",))
    reply = faults.kill_container(devcluster.node_state_dir, ns, "signalled", "c", signal="SIGTERM")
    assert reply["signal"] == int(signal.SIGTERM)
    pod = pod_phase(devcluster, ns, "signalled", ("Failed",))
    assert terminated(pod)["exitCode"] == 143 and terminated(pod)["signal"] == 15


def test_drain_honours_a_pod_disruption_budget(devcluster: ClusterHandle, ns: str) -> None:
    core = devcluster.core()
    pod = pod_manifest("guarded", [container("c", "import time; time.sleep(120)")])
    pod["metadata"]["labels"] = {"app": "guarded"}
    core.create_namespaced_pod(ns, pod)
    from kubernetes import client

    client.PolicyV1Api(devcluster.api()).create_namespaced_pod_disruption_budget(
        ns,
        {
            "metadata": {"name": "keep-one"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        },
    )
    running = pod_phase(devcluster, ns, "guarded", ("Running",))
    node = running["spec"]["nodeName"]

    def budget_observed() -> Any:
        pdb = client.PolicyV1Api(devcluster.api()).read_namespaced_pod_disruption_budget("keep-one", ns)
        return pdb.status and pdb.status.current_healthy == 1

    wait_until(budget_observed, timeout=30, what="disruption controller to count the pod")
    try:
        with pytest.raises(faults.FaultError, match="PodDisruptionBudget"):
            faults.drain(devcluster.kubeconfig, node, timeout=4)
    finally:
        faults.uncordon(devcluster.kubeconfig, node)
    assert core.read_namespaced_pod("guarded", ns).status.phase == "Running"
    core.delete_namespaced_pod("guarded", ns, grace_period_seconds=1)
