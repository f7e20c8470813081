"""The output sensor and the workspace cleanup resolve their namespace as the Job operator does:
the argument after templating, else the connection's ``namespace`` extra; a bad name is final and
no request is made."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_kbatch.operators.workspace import KbatchWorkspaceCleanupOperator
from airflow_provider_kbatch.pipeline.workspace import Workspace
from airflow_provider_kbatch.sensors.output import KbatchOutputSensor


class Hook:
    def __init__(self, namespace: str = "team-a") -> None:
        self.namespace = namespace
        self.calls: list[tuple[Any, ...]] = []

    def get_namespace(self) -> str:
        return self.namespace

    def list_config_maps(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list_config_maps", namespace, selector))
        return []


def _sensor(hook: Hook, **kwargs: Any) -> KbatchOutputSensor:
    sensor = KbatchOutputSensor(
        task_id="wait", external_dag_id="etl", output_name="clean", run_id="r1", **kwargs
    )
    sensor.__dict__["hook"] = hook
    return sensor


def test_output_sensor_reads_the_connections_namespace() -> None:
    hook = Hook("team-a")
    assert _sensor(hook).poke({}).is_done is False
    assert [c[1] for c in hook.calls] == ["team-a"]


@pytest.mark.parametrize(("argument", "connection"), [("Bad_Namespace", "team-a"), (None, "Bad_Namespace")])
def test_output_sensor_refuses_a_bad_namespace_before_any_request(
    argument: str | None, connection: str
) -> None:
    hook = Hook(connection)
    with pytest.raises(AirflowFailException, match="namespace"):
        _sensor(hook, namespace=argument).poke({})
    assert hook.calls == []


def test_cleanup_refuses_a_bad_namespace_before_any_request() -> None:
    hook = Hook("Bad_Namespace")
    op = KbatchWorkspaceCleanupOperator(task_id="cleanup", workspace=Workspace(create=True), check_run=False)
    op.__dict__["hook"] = hook
    ti = SimpleNamespace(dag_id="etl", task_id="cleanup", run_id="r1")
    with pytest.raises(AirflowFailException, match="namespace"):
        op.execute({"ti": ti})  # type: ignore[arg-type]
    assert hook.calls == []
