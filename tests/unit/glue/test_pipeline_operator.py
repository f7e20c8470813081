"""KbatchJobOperator's pipeline parameters: outlets, the rendered manifest, and mistakes named
before any request (the workspace I/O itself is in test_storage.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, Asset, AssetAlias

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.pipeline.workspace import Workspace, claim_name
from airflow_provider_kbatch.spec.errors import KbatchSpecError

WS = Workspace(create=True)
RUN = "manual__2026-01-01T00:00:00+00:00"


def dag() -> DAG:
    return DAG("etl", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))


class NoHook:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no request expected, got hook.{name}")


def test_output_is_an_asset_and_output_stays_the_xcomarg() -> None:
    with dag():
        static = KbatchJobOperator(task_id="a", image="i", namespace="batch", workspace=WS, output="raw")
        templated = KbatchJobOperator(
            task_id="b", image="i", namespace="{{ params.ns }}", workspace=WS, output="clean", inputs=["raw"]
        )
        plain = KbatchJobOperator(task_id="c", image="i")
    assert static.outlets == [Asset(uri="kbatch://batch/etl/raw")]
    assert templated.outlets == [AssetAlias(name="kbatch:etl/clean")]
    assert plain.outlets == []
    assert static.output_name == "raw" and type(static.output).__name__ == "PlainXComArg"


def test_rendered_manifest_shows_the_wiring() -> None:
    with dag():
        op = KbatchJobOperator(
            task_id="transform",
            image="i",
            namespace="batch",
            completions=2,
            workspace=WS,
            inputs=["raw"],
            accepts={"raw": Contract("orders", "1.0", {"id": "int"})},
            output="clean",
        )
    ti = SimpleNamespace(dag_id="etl", task_id="transform", run_id=RUN, map_index=-1, try_number=1, xcom={})
    ti.xcom_push = lambda key, value: ti.xcom.__setitem__(key, value)
    op.render_template_fields({"ti": ti})
    assert op.job_manifest is not None and "invalid" not in op.job_manifest, op.job_manifest
    pod = op.job_manifest["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim_name("etl", RUN)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KBATCH_INPUT_RAW_DIR"] == "/kbatch/in/raw" and env["KBATCH_OUTPUT_DIR"] == "/kbatch/out/clean"
    assert '"fields":{"id":"int"}' in env["KBATCH_INPUT_RAW_CONTRACT"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"output": "raw"}, "workspace"),
        ({"workspace": WS, "produces": Contract("o", "1.0", {})}, "produces"),
        ({"workspace": WS, "inputs": ["a"], "accepts": {"b": Contract("o", "1.0", {})}}, "accepts"),
        ({"workspace": WS, "output": "o", "env": {"KBATCH_OUTPUT_DIR": "/mine"}}, "env"),
        (
            {
                "workspace": WS,
                "checkpoint": True,
                "volumes": [{"name": "v", "emptyDir": {}}],
                "volume_mounts": [{"name": "v", "mountPath": "/kbatch"}],
            },
            "volume_mounts",
        ),
    ],
)
def test_port_mistakes_are_named_before_any_request(kwargs: dict[str, Any], field: str) -> None:
    with dag():
        op = KbatchJobOperator(task_id="t", image="i", **kwargs)
    op.__dict__["hook"] = NoHook()
    ti = SimpleNamespace(dag_id="etl", task_id="t", run_id=RUN, map_index=-1, try_number=1, xcom={})
    ti.xcom_push = lambda key, value: ti.xcom.__setitem__(key, value)
    with pytest.raises(KbatchSpecError) as err:
        op.execute({"ti": ti})
    assert field in err.value.field
