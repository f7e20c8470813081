"""The Airflow plugin kbatch registers through the ``airflow.plugins`` entry point."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class KbatchPlugin(AirflowPlugin):
    name = "kbatch"
