"""The Airflow plugin kbatch registers through the ``airflow.plugins`` entry point.

- ``fastapi_apps``: the read-only API and the pages of the views, mounted at ``/kbatch`` under the
  api-server (:mod:`airflow_provider_kbatch.ui.api`, built on its first request so the other
  components that load plugins, the scheduler and the workers, never import FastAPI for it);
- ``external_views``: a "kbatch indexes" tab on every task instance (the per-index view) and a
  "kbatch pipeline" tab on every DAG run (the run's stages from the ledger). Airflow 3.3 shows a
  ``task_instance`` view on every task, so the page says plainly when a task is not a stage.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/kbatch"
STAGE_VIEW_HREF = (
    URL_PREFIX + "/view/stage?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"
)
RUN_VIEW_HREF = URL_PREFIX + "/view/run?dag_id={DAG_ID}&run_id={RUN_ID}"


class LazyApp:
    """An ASGI app that builds the FastAPI app of :mod:`.api` on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_kbatch.ui.api import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "airflow_provider_kbatch.ui.api:create_app()"


class KbatchPlugin(AirflowPlugin):
    name = "kbatch"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "kbatch"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "kbatch indexes",
            "href": STAGE_VIEW_HREF,
            "destination": "task_instance",
            "url_route": "kbatch-indexes",
        },
        {
            "name": "kbatch pipeline",
            "href": RUN_VIEW_HREF,
            "destination": "dag_run",
            "url_route": "kbatch-pipeline",
        },
    ]
