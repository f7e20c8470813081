"""kbatch: Apache Airflow provider that runs batch stages as native Kubernetes Jobs.

This module imports nothing heavy so that ``airflow_provider_kbatch.runtime`` works in a slim
worker image without Airflow or the Kubernetes client installed.
"""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "airflow-provider-kbatch",
        "name": "kbatch",
        "description": "Batch stages as native Kubernetes Jobs: Indexed fan-out, pod failure and "
        "success policies, adoption, resume on retry, PVC hand-off and a run ledger.",
        "versions": [__version__],
        "operators": [
            {
                "integration-name": "kbatch",
                "python-modules": [
                    "airflow_provider_kbatch.operators.job",
                    "airflow_provider_kbatch.operators.workspace",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "kbatch",
                "python-modules": [
                    "airflow_provider_kbatch.sensors.job",
                    "airflow_provider_kbatch.sensors.output",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "kbatch",
                "python-modules": [
                    "airflow_provider_kbatch.triggers.job",
                    "airflow_provider_kbatch.triggers.output",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": "kbatch",
                "python-modules": ["airflow_provider_kbatch.hooks.kbatch"],
            }
        ],
        "integrations": [
            {
                "integration-name": "kbatch",
                "external-doc-url": "https://kubernetes.io/docs/concepts/workloads/controllers/job/",
                "tags": ["software"],
            }
        ],
    }
