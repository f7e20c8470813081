"""The example stage programs: stdlib + runtime only (they run in the slim worker image), every
module a DAG names exists, and the ingest -> transform -> publish chain produces the expected
report when run as plain processes with the environment the operator would set."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_kbatch.examples as examples_pkg
from airflow_provider_kbatch.examples.orders import expected_report
from airflow_provider_kbatch.pipeline.contracts import Contract

EXAMPLES = Path(examples_pkg.__file__).parent
DAGS = Path(__file__).resolve().parents[3] / "dags" / "examples"
ALLOWED = ("airflow_provider_kbatch.runtime", "airflow_provider_kbatch.examples")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_stage_imports_only_stdlib_runtime_and_examples(path: Path) -> None:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    bad = [
        n
        for n in names
        if n != "airflow_provider_kbatch"
        and not n.startswith(ALLOWED)
        and n.split(".")[0] not in sys.stdlib_module_names
        and n != "__future__"
    ]
    assert bad == []


def test_every_stage_module_named_by_a_dag_exists() -> None:
    named = set()
    for dag in DAGS.glob("*.py"):
        named |= set(re.findall(r"airflow_provider_kbatch\.examples\.(\w+)", dag.read_text()))
        named |= set(re.findall(r'_module\("(\w+)"\)', dag.read_text()))
    assert named >= {"ingest", "transform", "publish", "checkpointed"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} >= named


def _run(module: str, env: dict[str, str], tmp: Path, index: int) -> dict[str, object]:
    message = tmp / f"{module}-{index}.msg"
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KBATCH_")},
        **env,
        "KBATCH_INDEX": str(index),
        "KBATCH_RUN_ID": "run-1",
        "KBATCH_STAGE": module,
        "KBATCH_TERMINATION_MESSAGE_PATH": str(message),
    }
    proc = subprocess.run(
        [sys.executable, "-m", f"airflow_provider_kbatch.examples.{module}"],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(message.read_text()))


def test_the_example_chain_as_plain_processes(tmp_path: Path) -> None:
    orders = Contract("orders", "1.0", {"order_id": "int", "amount_cents": "int", "category": "str"})
    raw, clean, report = tmp_path / "raw", tmp_path / "clean", tmp_path / "report"
    for i in range(3):
        out = _run(
            "ingest",
            {
                "KBATCH_OUTPUT_DIR": str(raw),
                "KBATCH_STAGE_INDEXES": "0-2",
                "KBATCH_OUTPUT_CONTRACT": orders.to_json(),
            },
            tmp_path,
            i,
        )
        assert out["records"] == 50
    assert "_kbatch_output" in out  # the last index finalized the manifest
    for i in range(2):
        _run(
            "transform",
            {
                "KBATCH_INPUT_RAW_ORDERS_DIR": str(raw),
                "KBATCH_INPUT_RAW_ORDERS_CONTRACT": orders.to_json(),
                "KBATCH_OUTPUT_DIR": str(clean),
                "KBATCH_STAGE_INDEXES": "0-1",
            },
            tmp_path,
            i,
        )
    result = _run(
        "publish",
        {
            "KBATCH_INPUT_CLEAN_ORDERS_DIR": str(clean),
            "KBATCH_OUTPUT_DIR": str(report),
            "KBATCH_STAGE_INDEXES": "0",
        },
        tmp_path,
        0,
    )
    assert result["by_category"] == expected_report(3)
    assert (report / "_kbatch" / "manifest.json").is_file()
