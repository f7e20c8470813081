"""kbatch stages under a real Kueue (v0.17.0, built from the Go module proxy) on the local
control plane: a cluster of its own (``DevCluster(kueue=True)``, the same as ``devcluster up
--kueue``), with Kueue's CRDs, its webhooks called by the API server on loopback and its
controller manager, for this module only.

One ClusterQueue with 1 CPU of quota that preempts lower priorities within itself, one
LocalQueue. Stages run through ``KbatchJobOperator.execute`` (synchronous mode: the same wait the
trigger runs), each in a thread as a worker would run it:

* a low-priority 2-index stage (``priority_class_name="kbatch-low"``, 500m per pod) is admitted by
  Kueue and runs; a high-priority stage (``kbatch-high``, 1 CPU) queued behind it makes Kueue
  preempt it (suspend its Job). The preempted stage reports its queue wait again, is admitted
  again once the high one is done, and succeeds on its first Airflow try with one ledger attempt
  and no failed pod counted by its Job (``backoffLimit`` 0: one counted failure would fail it);
* a stage that asks for more than the queue's quota is never admitted and ``queue_timeout``
  fails it; its Job is deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import ClusterHandle, wait_until

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

CONN_ID = "kbatch_kueue_test"
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
CLUSTER_QUEUE = "kbatch-test"
LOCAL_QUEUE = "team-a"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
ADMITTED = re.compile(r"job (\S+) admitted after ([\d.]+)s in the queue")


def custom(handle: ClusterHandle) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(handle.api())


@pytest.fixture(scope="module")
def kueue_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """A fresh cluster with Kueue, a ResourceFlavor and the 1-CPU ClusterQueue."""
    from airflow_provider_kbatch.devcluster.cluster import DevCluster

    cluster = DevCluster(
        tmp_path_factory.mktemp("kueue-cluster"), nodes=1, kueue=True, fast_job_backoff="200ms"
    )
    started = time.monotonic()
    try:
        cluster.up(wait_seconds=240)
    except Exception:
        cluster.down()
        raise
    log.info("measured kueue_cluster_up_s = %.1f", time.monotonic() - started)
    conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(cluster.kubeconfig)}}
    env_key = f"AIRFLOW_CONN_{CONN_ID.upper()}"
    os.environ[env_key] = json.dumps(conn)
    handle = ClusterHandle(cluster)
    try:
        api = custom(handle)
        api.create_cluster_custom_object(
            GROUP, VERSION, "resourceflavors", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceFlavor",
                                                "metadata": {"name": "default"}},
        )  # fmt: skip
        api.create_cluster_custom_object(
            GROUP,
            VERSION,
            "clusterqueues",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ClusterQueue",
                "metadata": {"name": CLUSTER_QUEUE},
                "spec": {
                    "namespaceSelector": {},
                    "preemption": {"withinClusterQueue": "LowerPriority"},
                    "resourceGroups": [
                        {
                            "coveredResources": ["cpu"],
                            "flavors": [
                                {"name": "default", "resources": [{"name": "cpu", "nominalQuota": "1"}]}
                            ],
                        }
                    ],
                },
            },
        )
        yield handle
    finally:
        os.environ.pop(env_key, None)
        cluster.down()
    # down stops every process of the cluster, Kueue's manager and the control plane alike
    assert leftover_processes(str(cluster.state_dir)) == []


def leftover_processes(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if marker.encode() in cmdline:
                    found.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


@pytest.fixture
def queue_namespace(kueue_cluster: ClusterHandle) -> str:
    """A fresh namespace with the LocalQueue ``team-a``, active in Kueue."""
    namespace = kueue_cluster.namespace("kq")
    api = custom(kueue_cluster)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LocalQueue",
        "metadata": {"name": LOCAL_QUEUE, "namespace": namespace},
        "spec": {"clusterQueue": CLUSTER_QUEUE},
    }
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "localqueues", body)

    def active() -> bool:
        queue = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "localqueues", LOCAL_QUEUE)
        conditions = (queue.get("status") or {}).get("conditions") or ()
        return any(c["type"] == "Active" and c["status"] == "True" for c in conditions)

    wait_until(active, timeout=60, what="the LocalQueue active")
    return namespace


class Stage(threading.Thread):
    """One ``KbatchJobOperator`` task instance executing in a thread, its log kept."""

    def __init__(self, namespace: str, task_id: str, **arguments: Any) -> None:
        super().__init__(name=f"stage-{task_id}", daemon=True)
        from airflow_provider_kbatch.operators.job import KbatchJobOperator

        self.operator = KbatchJobOperator(
            task_id=task_id,
            namespace=namespace,
            conn_id=CONN_ID,
            image="python:3.11-slim",
            queue_name=LOCAL_QUEUE,
            deferrable=False,
            progress_interval=1,
            **arguments,
        )
        ti = SimpleNamespace(
            dag_id="kbatch_test_kueue",
            task_id=task_id,
            run_id=f"manual__{secrets.token_hex(4)}",
            map_index=-1,
            try_number=1,
            xcom={},
        )
        ti.xcom_push = lambda key, value: ti.xcom.__setitem__(key, value)
        self.context = {"ti": ti}
        self.result: Any = None
        self.error: BaseException | None = None
        self.started_at = 0.0

    def run(self) -> None:
        self.started_at = time.time()
        try:
            self.result = self.operator.execute(self.context)  # type: ignore[arg-type]
        except BaseException as err:  # reported by the test
            self.error = err

    def finish(self, timeout: float = 180) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} still running"

    def identity(self) -> Any:
        return self.operator.identity(self.context)  # type: ignore[arg-type]


def task_log(output: str, job_name: str) -> str:
    """The operator's log lines about ``job_name`` (its task log, here on the test's stdout)."""
    return "\n".join(line for line in output.splitlines() if job_name in line)


def stage_job(handle: ClusterHandle, namespace: str, task_id: str) -> Any:
    found = handle.batch().list_namespaced_job(namespace, label_selector=f"kbatch.io/task-id={task_id}").items
    return found[0] if found else None


def workload_of(handle: ClusterHandle, namespace: str, job_uid: str) -> dict[str, Any] | None:
    workloads = custom(handle).list_namespaced_custom_object(GROUP, VERSION, namespace, "workloads")["items"]
    owned = [
        w for w in workloads if any(o["uid"] == job_uid for o in w["metadata"].get("ownerReferences", ()))
    ]
    return owned[0] if owned else None


def running_pods(handle: ClusterHandle, namespace: str, job: Any) -> list[Any]:
    selector = f"batch.kubernetes.io/controller-uid={job.metadata.uid}"
    pods = handle.core().list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


@pytest.mark.timeout(400)
def test_a_preempted_stage_burns_no_retry_and_finishes_after_the_higher_priority_one(
    kueue_cluster: ClusterHandle,
    queue_namespace: str,
    record_property: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow_provider_kbatch.engine import ledger
    from airflow_provider_kbatch.hooks.kbatch import KbatchHook

    ns = queue_namespace
    low = Stage(
        ns,
        "low",
        command=["python", "-c", "import time; time.sleep(4)"],
        completions=2,
        parallelism=2,
        resources={"requests": {"cpu": "500m"}},
        priority_class_name="kbatch-low",
        backoff_limit=0,
    )
    low.start()
    job = wait_until(
        lambda: (
            (j := stage_job(kueue_cluster, ns, "low")) is not None
            and len(running_pods(kueue_cluster, ns, j)) == 2
            and j
        ),
        timeout=120,
        what="the low stage admitted by Kueue, both pods running",
    )
    assert job.metadata.labels[QUEUE_LABEL] == LOCAL_QUEUE
    high = Stage(
        ns,
        "high",
        command=["python", "-c", "import time; time.sleep(2)"],
        resources={"requests": {"cpu": "1"}},
        priority_class_name="kbatch-high",
        backoff_limit=0,
    )
    high.start()
    high.finish()
    low.finish()
    output = capfd.readouterr().out
    assert high.error is None, f"{high.error!r}\n{output[-6000:]}"
    assert low.error is None, f"{low.error!r}\n{output[-6000:]}"

    batch = kueue_cluster.batch()
    low_job = batch.read_namespaced_job(job.metadata.name, ns)
    high_job = stage_job(kueue_cluster, ns, "high")
    assert low_job.metadata.uid == job.metadata.uid, "the same Job ran again, no second Job"
    # Kueue preempted it: its Workload was evicted for the high-priority one, then admitted again
    workload = workload_of(kueue_cluster, ns, job.metadata.uid)
    assert workload is not None
    evictions = (workload.get("status") or {}).get("schedulingStats", {}).get("evictions") or []
    assert any(e.get("reason") == "Preempted" for e in evictions), json.dumps(workload.get("status"))[:3000]
    # the preemption burned nothing: no pod failure counted by the Job, one Airflow try, one attempt
    assert not low_job.status.failed, low_job.status
    assert low_job.status.succeeded == 2
    assert high_job.status.completion_time <= low_job.status.completion_time
    record = ledger.read_stage(KbatchHook(conn_id=CONN_ID), ns, low.identity())
    assert record is not None and record.state == "succeeded"
    assert [a.try_number for a in record.attempts] == [1]

    # the queue wait after the preemption is reported: the wait for the quota the high-priority
    # stage held (at least its run time). Kueue's first admission can come before the wait
    # starts (then the Job is never seen suspended before it ran), so there are one or two.
    out = task_log(output, low_job.metadata.name)
    waits = [float(m.group(2)) for m in ADMITTED.finditer(out)]
    queued = out.count("is queued (suspended), waiting for admission")
    assert queued == len(waits) and 1 <= len(waits) <= 2, out[-6000:]
    high_ran = (high_job.status.completion_time - high_job.status.start_time).total_seconds()
    assert waits[-1] >= high_ran - 1, (waits, high_ran)
    high_out = task_log(output, high_job.metadata.name)
    high_waits = [float(m.group(2)) for m in ADMITTED.finditer(high_out)]
    assert len(high_waits) == 1, high_out[-4000:]  # it waited for Kueue to evict the low one
    record_property("kueue_preempted_requeue_wait_s", waits[-1])
    record_property("kueue_high_wait_for_preemption_s", high_waits[0])
    log.info("measured queue waits low=%s high=%s high_ran=%.1f", waits, high_waits, high_ran)


@pytest.mark.timeout(300)
def test_queue_timeout_fails_a_stage_kueue_never_admits(
    kueue_cluster: ClusterHandle, queue_namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.exceptions import AirflowException

    ns = queue_namespace
    stage = Stage(
        ns,
        "too_big",
        command=["python", "-c", "pass"],
        resources={"requests": {"cpu": "2"}},  # more than the ClusterQueue's whole quota
        queue_timeout=5,
    )
    stage.start()
    job = wait_until(lambda: stage_job(kueue_cluster, ns, "too_big"), timeout=60, what="the Job")

    def pending_for_quota() -> str | None:
        workload = workload_of(kueue_cluster, ns, job.metadata.uid)
        conditions = ((workload or {}).get("status") or {}).get("conditions") or ()
        reserved = next((c for c in conditions if c["type"] == "QuotaReserved"), None)
        return reserved["message"] if reserved and reserved["status"] == "False" else None

    # Kueue looked at it and found no quota for it (its Workload says why) ...
    message = wait_until(pending_for_quota, timeout=30, what="Kueue's verdict on the Workload")
    assert "insufficient" in message.lower() or "quota" in message.lower(), message
    stage.finish()
    # ... so it stayed suspended and queue_timeout failed the stage
    assert isinstance(stage.error, AirflowException), stage.error
    assert "more than queue_timeout=5" in str(stage.error)
    out = task_log(capfd.readouterr().out, job.metadata.name)
    assert "is queued (suspended), waiting for admission" in out and "admitted after" not in out, out
    wait_until(lambda: stage_job(kueue_cluster, ns, "too_big") is None, timeout=60, what="the Job deleted")
    pods = kueue_cluster.core().list_namespaced_pod(ns, label_selector="kbatch.io/task-id=too_big").items
    assert pods == []
