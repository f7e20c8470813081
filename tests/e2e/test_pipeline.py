"""The three-stage pipeline example end to end: PVC hand-off, contracts, run ledger, assets,
workspace cleanup -- real Airflow 3 (`airflow dags test`) against the real local control plane."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from airflow_provider_kbatch.examples.orders import ORDERS_PER_INDEX, expected_report
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.pipeline.workspace import read_workspace
from airflow_provider_kbatch.sensors.output import KbatchOutputSensor

DAG_ID = "kbatch_example_pipeline"
log = logging.getLogger(__name__)


def _ledger(devcluster: Any, namespace: str) -> dict[str, str]:
    items = (
        devcluster.core().list_namespaced_config_map(namespace, label_selector="kbatch.io/ledger=true").items
    )
    assert len(items) == 1, [i.metadata.name for i in items]
    return dict(items[0].data or {})


def test_three_stage_pipeline_hands_data_through_the_workspace(airflow_env, devcluster, namespace):
    started = time.monotonic()
    proc = airflow_env.dags_test(DAG_ID, conf={"namespace": namespace})
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    log.warning("pipeline wall time (airflow dags test, 3 stages + cleanup): %.1fs", wall)
    states = airflow_env.task_states(DAG_ID)
    assert {t: s[0] for (t, _), s in states.items()} == dict.fromkeys(
        ("ingest", "transform", "publish", "cleanup"), "success"
    )

    # the data: recomputed from the order formula, never read from the stages themselves
    expected = expected_report(8)
    ingest = airflow_env.xcom(DAG_ID, "ingest")
    assert ingest["completed_indexes"] == "0-7"
    assert sum(r["records"] for r in ingest["results"].values()) == 8 * ORDERS_PER_INDEX
    transform = airflow_env.xcom(DAG_ID, "transform")
    assert sum(r["read"] for r in transform["results"].values()) == 8 * ORDERS_PER_INDEX
    assert sum(r["kept"] for r in transform["results"].values()) == sum(
        c["orders"] for c in expected.values()
    )
    assert sorted(r["files"] for r in transform["results"].values()) == [4, 4]
    publish = airflow_env.xcom(DAG_ID, "publish")
    summary = publish["results"]["0"]
    assert summary["by_category"] == expected
    assert summary["orders"] == sum(c["orders"] for c in expected.values())
    assert summary["net_cents"] == sum(c["net_cents"] for c in expected.values())

    # the ledger: every stage succeeded, with its output's digest, size and contract
    data = _ledger(devcluster, namespace)
    outputs = {}
    for task, output, contract in (
        ("ingest", "raw_orders", "orders"),
        ("transform", "clean_orders", "clean_orders"),
        ("publish", "report", "order_report"),
    ):
        record = rules.read_stage(data, rules.stage_key(task))
        assert record is not None and record.state == "succeeded", (task, record)
        # a consumer's record starts when its inputs are checked (lineage), before its Job runs
        first = ["pending"] if task != "ingest" else []
        assert [t[0] for t in record.transitions] == [*first, "running", "succeeded"], (task, record)
        assert record.output is not None and record.output.name == output
        assert record.output.manifest_digest.startswith("sha256:") and record.output.bytes > 0
        assert dict(record.output.contract or {}) == {"name": contract, "version": "1.0"}
        outputs[output] = record.output
    assert outputs["raw_orders"].records == 8 * ORDERS_PER_INDEX
    assert outputs["report"].records == 3
    # lineage: publish read exactly the manifest the ledger recorded for transform
    assert summary["input_manifest"] == outputs["clean_orders"].manifest_digest

    # the workspace: one claim for the run, every output bound to it, deleted after success
    workspace = read_workspace(data)
    assert workspace is not None and workspace.generation == 1 and workspace.state == "deleted"
    assert {n: loc.manifest_digest for n, loc in workspace.outputs.items()} == {
        n: o.manifest_digest for n, o in outputs.items()
    }
    assert {loc.claim_uid for loc in workspace.outputs.values()} == {workspace.uid}
    # cleanup freed the storage: the claim is gone (not Terminating behind its pods), and the
    # run's finished Jobs went first, with their pods
    claims = devcluster.core().list_namespaced_persistent_volume_claim(namespace).items
    assert claims == [], [(c.metadata.name, c.metadata.deletion_timestamp) for c in claims]
    assert devcluster.batch().list_namespaced_job(namespace, label_selector="kbatch.io/dag-id").items == []
    assert devcluster.core().list_namespaced_pod(namespace).items == []

    # the pods ran with inputs read-only, the own output read-write, each on its run's sub-path:
    # the Job as it ran is the task's XCom "job_manifest"
    manifest = airflow_env.xcom(DAG_ID, "transform", key="job_manifest")
    pod = manifest["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/kbatch/in/raw_orders"]["readOnly"] is True
    assert not mounts["/kbatch/out/clean_orders"].get("readOnly")
    assert mounts["/kbatch/out/clean_orders"]["subPath"].endswith("/outputs/clean_orders")
    assert mounts["/kbatch/in/raw_orders"]["subPath"].endswith("/outputs/raw_orders")
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)["persistentVolumeClaim"][
        "claimName"
    ]
    assert claim == workspace.claim

    # the assets: one event per output, carrying the manifest digest
    with airflow_env.db() as db:
        rows = db.execute(
            "select a.uri, e.extra from asset_event e join asset a on a.id = e.asset_id where a.uri like ?",
            (f"kbatch://{namespace}/{DAG_ID}/%",),
        ).fetchall()
    events = {uri.rsplit("/", 1)[1]: json.loads(extra) for uri, extra in rows}
    assert set(events) == {"raw_orders", "clean_orders", "report"}
    assert events["report"]["manifest_digest"] == outputs["report"].manifest_digest

    # a downstream DAG's sensor finds the output by run id, or by the run's logical date
    run_id = workspace.run_id
    assert (
        run_id
        and rules.ledger_name(DAG_ID, run_id)
        == devcluster.core()
        .list_namespaced_config_map(namespace, label_selector="kbatch.io/ledger=true")
        .items[0]
        .metadata.name
    )
    for how in ({"run_id": run_id}, {"logical_date": "2026-01-01"}):
        sensor = KbatchOutputSensor(
            task_id="wait", external_dag_id=DAG_ID, output_name="clean_orders", namespace=namespace, **how
        )
        poked = sensor.poke({})
        assert poked.is_done, how
        assert poked.xcom_value["stage"] == "transform" and poked.xcom_value["run_id"] == run_id
        assert poked.xcom_value["manifest_digest"] == outputs["clean_orders"].manifest_digest
