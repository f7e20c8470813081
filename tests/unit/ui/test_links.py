"""Extra links: "Indexes" and configured templates (their checks, rendering and serialization)."""

from __future__ import annotations

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_provider_kbatch.operators.links import (
    KbatchIndexesLink,
    KbatchTemplateLink,
    check_links,
    indexes_url,
    link_problems,
    render_link,
)
from airflow_provider_kbatch.spec.errors import KbatchSpecError


def test_the_indexes_link_opens_the_kbatch_tab_of_the_task_instance() -> None:
    assert (
        indexes_url("d", "manual__2026-12-01T00:00:00+00:00", "t", -1)
        == "/dags/d/runs/manual__2026-12-01T00%3A00%3A00%2B00%3A00/tasks/t/plugin/kbatch-indexes"
    )
    assert indexes_url("d", "r", "t", 3, "http://af").endswith("/tasks/t/mapped/3/plugin/kbatch-indexes")
    assert indexes_url("d", "r", "t", 3, "http://af").startswith("http://af/dags/d/runs/r/")


def test_a_template_link_quotes_each_field() -> None:
    fields = {"dag_id": "d", "run_id": "a b/c", "task_id": "t", "map_index": "-1", "try_number": "2"}
    assert (
        render_link("https://g/x?run={run_id}&try={try_number}", fields) == "https://g/x?run=a%20b%2Fc&try=2"
    )
    link = KbatchTemplateLink("Grafana board", "https://g/{dag_id}")
    assert link.name == "Grafana board" and link.xcom_key == "_link_kbatch_Grafana_board"
    assert KbatchIndexesLink().name == "Indexes"
    key = TaskInstanceKey("d", "t", "r", 1, -1)
    assert KbatchTemplateLink("G", "https://g/{dag}").get_link(None, ti_key=key) == ""  # type: ignore[arg-type]
    assert KbatchTemplateLink("G", "https://g/{dag_id}").get_link(None, ti_key=key) == "https://g/d"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("links", "needle"),
    [
        (["https://x"], "expected a mapping"),
        ({"": "https://x"}, "non-empty name"),
        ({"Indexes": "https://x"}, "other than 'Indexes'"),
        ({"G": "ftp://x"}, "http(s)://"),
        ({"G": "https://x/{dag}"}, "unknown field(s) {dag}"),
        ({"G": "https://x/{dag_id"}, "not a valid template"),
    ],
)
def test_bad_links_are_named_with_the_fix(links: object, needle: str) -> None:
    assert any(needle in p for p in link_problems(links))
    with pytest.raises(KbatchSpecError) as err:
        check_links(links)
    assert str(err.value).startswith("links: ") and "{dag_id}" in str(err.value) and err.value.final


def test_good_links_pass() -> None:
    assert link_problems(None) == []
    assert link_problems({"Logs": "/logs?dag={dag_id}&run={run_id}&task={task_id}&i={map_index}"}) == []


def test_the_operator_serializes_its_links_by_name_and_xcom_key() -> None:
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import OperatorSerialization

    from airflow_provider_kbatch.operators.job import KbatchJobOperator

    with DAG("links_dag", schedule=None):
        plain = KbatchJobOperator(task_id="plain", image="i", command=["true"])
        linked = KbatchJobOperator(
            task_id="linked", image="i", command=["true"], links={"Grafana": "https://g/{dag_id}/{run_id}"}
        )
    assert [link.name for link in plain.operator_extra_links] == ["Indexes"]
    encoded = OperatorSerialization.serialize_operator(linked)["_operator_extra_links"]
    assert encoded == {"Indexes": "_link_KbatchIndexesLink", "Grafana": "_link_kbatch_Grafana"}
