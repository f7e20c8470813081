"""What the dev cluster may import: the Kubernetes clients and the project's pure modules (spec,
hooks.retry, hooks.watch, errors), never Airflow."""

from __future__ import annotations

import subprocess
import sys


def test_the_process_node_and_the_cluster_import_no_airflow() -> None:
    """devcluster uses the project's pure modules (spec, hooks.retry, hooks.watch, errors) only."""
    modules = ["node", "cluster", "faults", "build", "pki", "ports"]
    code = "".join(f"import airflow_provider_kbatch.devcluster.{m}\n" for m in modules) + (
        "import sys\nprint(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
