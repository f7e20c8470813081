"""KbatchJobOperator's arguments end to end: real Airflow 3 (``airflow dags test``) against the
real local control plane. The DAGs are in ``tests/e2e/dags/kbatch_test_arguments.py``.

* ``completions="{{ params.n }}"`` renders to the string ``"3"`` and runs an Indexed Job of 3;
* without ``namespace``, the Job and the ledger land in the connection's ``namespace`` extra;
* a string ``command``, an invalid namespace after templating and a malformed ``job_template``
  fail on the first try (``retries=1`` does not apply), naming the field, with nothing sent;
* an input is an inlet: Airflow records the consuming task on the producer's Asset.
"""

from __future__ import annotations

import json

from tests.conftest import ClusterHandle, dump
from tests.e2e.conftest import AirflowEnv

MANAGED = "app.kubernetes.io/managed-by=airflow-provider-kbatch"


def _jobs(devcluster: ClusterHandle, namespace: str, dag_id: str) -> list:
    items = devcluster.batch().list_namespaced_job(namespace, label_selector=MANAGED).items
    return [j for j in items if (j.metadata.annotations or {}).get("kbatch.io/dag-id") == dag_id]


def test_templated_completions_run_that_many_indexes(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, namespace: str
) -> None:
    dag_id = "kbatch_test_templated_completions"
    proc = airflow_env.dags_test(dag_id, conf={"namespace": namespace, "n": 3})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert airflow_env.task_states(dag_id)[("fan_out", -1)] == ("success", 1)
    result = airflow_env.xcom(dag_id, "fan_out")
    assert result["completions"] == 3 and result["completed_indexes"] == "0-2", dump(result)
    (job,) = _jobs(devcluster, namespace, dag_id)
    assert job.spec.completions == 3 and job.spec.parallelism == 3 and job.spec.completion_mode == "Indexed"


def test_without_a_namespace_the_connections_namespace_is_used(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, namespace: str
) -> None:
    conn = json.loads(airflow_env.env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    conn["extra"] = {**conn.get("extra", {}), "namespace": namespace}
    env = AirflowEnv(airflow_env.home, {**airflow_env.env, "AIRFLOW_CONN_KBATCH_NS": json.dumps(conn)})
    dag_id = "kbatch_test_connection_namespace"
    proc = env.dags_test(dag_id, conf={"conn_id": "kbatch_ns"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert len(_jobs(devcluster, namespace, dag_id)) == 1, "the Job is in the connection's namespace"
    assert _jobs(devcluster, "default", dag_id) == [], "not in default"
    ledgers = devcluster.core().list_namespaced_config_map(namespace, label_selector="kbatch.io/ledger=true")
    assert len(ledgers.items) == 1, "the run ledger is in the connection's namespace too"
    assert env.xcom(dag_id, "in_connection_namespace")["namespace"] == namespace


def test_invalid_arguments_fail_on_the_first_try_naming_the_field(
    airflow_env: AirflowEnv, devcluster: ClusterHandle, namespace: str
) -> None:
    dag_id = "kbatch_test_invalid_arguments"
    proc = airflow_env.dags_test(dag_id, conf={"namespace": namespace, "bad_namespace": "Bad_Namespace"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    states = airflow_env.task_states(dag_id)
    for task in ("string_command", "bad_namespace", "bad_template"):
        assert states[(task, -1)] == ("failed", 1), f"{task}: {states}; retries=1 must not apply"
    for message in (
        "command: is a single string, not a list of strings",
        "namespace: 'Bad_Namespace' is not a valid namespace name",
        "job_template.spec.template: must be a mapping, got str",
    ):
        assert message in out, f"{message!r} not in the output:\n{out[-6000:]}"
    assert _jobs(devcluster, namespace, dag_id) == [] and _jobs(devcluster, "default", dag_id) == []
    config_maps = devcluster.core().list_namespaced_config_map(namespace, label_selector=MANAGED).items
    assert config_maps == [], "not even a ledger entry"


def test_an_input_is_an_inlet_of_the_producers_asset(airflow_env: AirflowEnv) -> None:
    airflow_env.run("dags", "reserialize", timeout=300)
    uri = "kbatch://kbatch-inlets/kbatch_test_inlets/numbers"
    with airflow_env.db() as db:
        inlets = db.execute(
            "select r.task_id, a.uri from task_inlet_asset_reference r join asset a on a.id = r.asset_id "
            "where r.dag_id = ?",
            ("kbatch_test_inlets",),
        ).fetchall()
        outlets = db.execute(
            "select r.task_id, a.uri from task_outlet_asset_reference r join asset a on a.id = r.asset_id "
            "where r.dag_id = ?",
            ("kbatch_test_inlets",),
        ).fetchall()
    assert inlets == [("consume", uri)]
    assert outlets == [("produce", uri)]
