"""Load the Kubernetes clients once in a long-lived Airflow process, so that every task process
it forks inherits them instead of importing them again.

The hooks import ``kubernetes`` and, through the cncf provider's hook, ``kubernetes_asyncio``
when a task first talks to the cluster. Both packages import every API model eagerly: about
1.1 CPU-seconds and 76 MiB per process (measured on Python 3.11). An Airflow scheduler with the
LocalExecutor, and a Celery worker, fork the process of each task from themselves, so a
deployment whose long-lived processes import this module pays that once, not once per task::

    # $AIRFLOW_HOME/config/airflow_local_settings.py
    import airflow_provider_kbatch.hooks.preload  # noqa: F401

    __all__: list[str] = []  # Airflow copies no name of this file into its settings

Airflow imports ``airflow_local_settings`` while ``airflow`` itself is being imported, so this
module imports only the two client packages, never Airflow.
"""

from __future__ import annotations

import kubernetes.client  # noqa: F401
import kubernetes_asyncio.client  # noqa: F401
