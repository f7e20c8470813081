"""The example Indexed DAG end to end: real Airflow 3 (`airflow dags test`, trigger included)
against the real local control plane."""

from __future__ import annotations

from typing import Any

from airflow_provider_kbatch.pipeline.records import read_stage, stage_key
from airflow_provider_kbatch.spec.intervals import IndexSet

DAG_ID = "kbatch_example_indexed"
SELECTOR = "app.kubernetes.io/managed-by=airflow-provider-kbatch"


def _jobs(devcluster: Any, namespace: str) -> list[Any]:
    return devcluster.batch().list_namespaced_job(namespace, label_selector=SELECTOR).items


def test_indexed_job_results_in_xcom_and_logs_of_every_index(airflow_env, devcluster, namespace):
    proc = airflow_env.dags_test(DAG_ID, conf={"namespace": namespace})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    states = airflow_env.task_states(DAG_ID)
    assert states[("squares", -1)][0] == "success"
    xcom = airflow_env.xcom(DAG_ID, "squares")
    assert xcom["completed_indexes"] == "0-7" and xcom["failed_indexes"] == ""
    assert xcom["results"] == {str(i): {"index": i, "square": i * i} for i in range(8)}
    output = proc.stdout + proc.stderr
    for i in range(8):
        assert f"[index {i}] " in output and f"square={i * i}" in output, f"no log line of index {i}"
    assert "indexes 8/8 done" in output
    jobs = _jobs(devcluster, namespace)
    assert len(jobs) == 1 and jobs[0].spec.completion_mode == "Indexed"
    # the Job controller made the pods; nothing else did (the official provider's duplicate-pod races)
    pods = devcluster.core().list_namespaced_pod(namespace).items
    assert len(pods) == 8
    assert all(p.metadata.owner_references[0].uid == jobs[0].metadata.uid for p in pods)


def test_failed_indexes_are_resumed_by_the_airflow_retry_only(airflow_env, devcluster, namespace):
    proc = airflow_env.dags_test(DAG_ID, conf={"namespace": namespace, "fail_indexes": "2,5"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert airflow_env.task_states(DAG_ID)[("squares", -1)] == ("success", 2)
    # the first attempt's Job (Failed, 6 of 8) is removed once the retry succeeded and the ledger
    # holds its indexes: kubectl shows the Job that completed, the ledger both attempts
    jobs = _jobs(devcluster, namespace)
    assert len(jobs) == 1, [j.metadata.name for j in jobs]
    (retry,) = jobs
    ledger = (
        devcluster.core().list_namespaced_config_map(namespace, label_selector="kbatch.io/ledger=true").items
    )
    record = read_stage(dict(ledger[0].data or {}), stage_key("squares"))
    assert record is not None and [a.try_number for a in record.attempts] == [1, 2]
    first = record.attempts[0]
    assert first.failed == IndexSet.of([2, 5]) and first.completed == IndexSet.of([0, 1, 3, 4, 6, 7])
    assert first.job != retry.metadata.name
    assert retry.spec.completions == 2 and retry.metadata.annotations["kbatch.io/index-map"] == "2,5"
    retry_pods = (
        devcluster.core()
        .list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/controller-uid={retry.metadata.uid}"
        )
        .items
    )
    assert len(retry_pods) == 2, "the retry must run only the two failed indexes"
    xcom = airflow_env.xcom(DAG_ID, "squares")
    assert xcom["completed_indexes"] == "0-7"
    assert set(xcom["results"]) == {str(i) for i in range(8)}  # earlier attempt's results kept
    assert xcom["results"]["5"] == {"index": 5, "square": 25}  # logical index, not the local 1


def test_fail_job_exit_code_fails_without_airflow_retry(airflow_env, devcluster, namespace):
    proc = airflow_env.dags_test(
        DAG_ID, conf={"namespace": namespace, "fail_indexes": "3", "fail_exit_code": 42}
    )
    assert proc.returncode != 0
    state, try_number = airflow_env.task_states(DAG_ID)[("squares", -1)]
    assert state == "failed" and try_number == 1, "retries=1 must not apply to a FailJob rule"
    output = proc.stdout + proc.stderr
    assert "FailJob rule matched" in output and "exit code 42" in output
    # the failure names the index and shows the last log lines of its pod
    assert "- index 3: pod " in output and "last log lines of" in output
    assert 'msg="failing on purpose"' in output
    jobs = _jobs(devcluster, namespace)
    assert len(jobs) == 1
    failed = [c for c in jobs[0].status.conditions if c.type == "Failed" and c.status == "True"]
    assert failed and failed[0].reason == "PodFailurePolicy"
