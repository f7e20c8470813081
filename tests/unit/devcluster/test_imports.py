"""What the dev cluster may import: the Kubernetes clients and the project's pure modules (spec,
hooks.retry, hooks.watch, errors), never Airflow."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from airflow_provider_kbatch.devcluster import processnode


def test_the_process_node_and_the_cluster_import_no_airflow() -> None:
    """devcluster uses the project's pure modules (spec, hooks.retry, hooks.watch, errors) only."""
    modules = ["node", "cluster", "components", "bootstrap", "faults", "build", "pki", "ports"]
    code = "".join(f"import airflow_provider_kbatch.devcluster.{m}\n" for m in modules) + (
        "import sys\nprint(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_process_node_modules_are_listed_in_order_and_import_only_those_above() -> None:
    """processnode/__init__.py lists every module; each imports only modules listed before it."""
    package = Path(processnode.__file__).parent
    listed = re.findall(r"^- ``(\w+)``", processnode.__doc__ or "", flags=re.MULTILINE)
    assert sorted(listed) == sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__")
    prefix = "airflow_provider_kbatch.devcluster.processnode."
    for position, name in enumerate(listed):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = {
            node.module.removeprefix(prefix)
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix)
        }
        assert imported <= set(listed[:position]), (
            f"{name} imports {sorted(imported - set(listed[:position]))}"
        )
