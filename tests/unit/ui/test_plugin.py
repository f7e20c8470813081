"""The plugin as Airflow reads it: its views and app fit the api-server's models; pages exist."""

from __future__ import annotations

import pytest

from airflow_provider_kbatch.ui.plugin import RUN_VIEW_HREF, STAGE_VIEW_HREF, KbatchPlugin


def test_the_views_and_the_app_fit_airflows_plugin_models() -> None:
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse, FastAPIAppResponse

    views = [ExternalViewResponse.model_validate(v) for v in KbatchPlugin.external_views]
    assert {v.destination for v in views} == {"task_instance", "dag_run"}
    app = KbatchPlugin.fastapi_apps[0]
    FastAPIAppResponse.model_validate({**app, "app": repr(app["app"])})
    for field in ("{DAG_ID}", "{RUN_ID}", "{TASK_ID}", "{MAP_INDEX}"):
        assert field in STAGE_VIEW_HREF
    assert "{DAG_ID}" in RUN_VIEW_HREF and "{TASK_ID}" not in RUN_VIEW_HREF


def test_the_entry_point_names_the_plugin() -> None:
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="airflow.plugins") if ep.name == "kbatch"]
    assert ep.load() is KbatchPlugin


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from airflow_provider_kbatch.ui.api import create_app

    return TestClient(create_app())


def test_pages_are_served_and_data_needs_a_user(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/view/stage")
    assert page.status_code == 200 and "../static/kbatch.js" in page.text
    assert client.get("/view/run").status_code == 200
    assert client.get("/static/kbatch.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/other.js").status_code == 404
    # no token and no cookie: Airflow's own get_user refuses before anything is read
    for path in ("/api/stage", "/api/stage/index", "/api/stage/log", "/api/run"):
        response = client.get(
            path, params={"dag_id": "d", "run_id": "r", "task_id": "t", "index": 0, "pod": "p"}
        )
        assert response.status_code == 401, path
