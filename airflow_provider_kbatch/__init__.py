"""kbatch: Apache Airflow provider that runs batch stages as native Kubernetes Jobs.

This module imports nothing heavy so that ``airflow_provider_kbatch.runtime`` works in a slim
worker image without Airflow or the Kubernetes client installed.
"""

from __future__ import annotations

import copy
from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
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
                    "airflow_provider_kbatch.operators.lifecycle",
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
                    "airflow_provider_kbatch.triggers.concurrency",
                    "airflow_provider_kbatch.triggers.job",
                    "airflow_provider_kbatch.triggers.output",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": "kbatch",
                "python-modules": [
                    "airflow_provider_kbatch.hooks.async_kbatch",
                    "airflow_provider_kbatch.hooks.kbatch",
                ],
            }
        ],
        # "Indexes" (the kbatch plugin's per-index tab); links configured with ``links=`` are
        # per task (serialized by name and XCom key), so they need no entry here
        "extra-links": ["airflow_provider_kbatch.operators.links.KbatchIndexesLink"],
        "integrations": [
            {
                "integration-name": "kbatch",
                "external-doc-url": "https://kubernetes.io/docs/concepts/workloads/controllers/job/",
                "tags": ["software"],
            }
        ],
        "config": copy.deepcopy(CONFIG),
    }


#: The ``[kbatch]`` section of Airflow's configuration: every option the provider reads
#: (``glue/settings.py`` reads each one, with the same defaults). ``airflow config get-value
#: kbatch <option>`` and ``airflow config list`` show them.
CONFIG = {
    "kbatch": {
        "description": "Options of the kbatch provider (batch stages as native Kubernetes Jobs).\n",
        "options": {
            "default_deferrable": {
                "description": "Whether KbatchJobOperator, KbatchJobSensor and KbatchOutputSensor wait in "
                "the triggerer when their ``deferrable`` argument is not given (a sensor given an "
                "explicit ``mode=`` waits that way). Airflow's ``[operators] default_deferrable`` is "
                "not read: its default, False, is written out in every generated airflow.cfg, so an "
                "explicit False cannot be told from it.\n",
                "version_added": "0.1.0",
                "type": "boolean",
                "example": "False",
                "default": "True",
            },
            "trigger_event_hold_seconds": {
                "description": "Seconds after a deferral during which a kbatch trigger holds an event "
                "that came early: Airflow 3.3 can mark a task failed when its trigger fires within "
                "seconds of the deferral (apache/airflow#72716). 0 turns the hold off.\n",
                "version_added": "0.1.0",
                "type": "float",
                "example": "0",
                "default": "6.0",
            },
            "end_in_triggerer": {
                "description": "Whether a deferred KbatchJobOperator stage whose Job succeeded ends "
                "in the triggerer (TaskSuccessEvent, with its XComs) instead of resuming in a worker "
                "for execute_complete, when nothing is left that needs a worker (no outlets, no "
                'cache, ...: README "Ending the task in the triggerer"). Saves the '
                "scheduling round trip after the Job ends. An operator's end_in_triggerer argument "
                "wins.\n",
                "version_added": "0.1.0",
                "type": "boolean",
                "example": "False",
                "default": "True",
            },
        },
    }
}
