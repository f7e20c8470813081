"""runtime/ runs in slim images: it may import only the standard library and runtime/ itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_kbatch.runtime as runtime_pkg

RUNTIME_DIR = Path(runtime_pkg.__file__).parent
ALLOWED_PREFIX = "airflow_provider_kbatch.runtime"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(RUNTIME_DIR.glob("*.py")), ids=lambda p: p.name)
def test_module_imports_only_stdlib_and_runtime(path: Path) -> None:
    bad = [
        name
        for name in _imports(path)
        if not (name == ALLOWED_PREFIX or name.startswith(ALLOWED_PREFIX + "."))
        and name.split(".")[0] not in sys.stdlib_module_names
        and name != "__future__"
    ]
    assert bad == [], f"{path.name} imports non-stdlib modules {bad}"


def test_import_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_kbatch.runtime, airflow_provider_kbatch.runtime.__main__\n"
        "bad = sorted(m for m in set(sys.modules) - before if m.split('.')[0] not in sys.stdlib_module_names "
        "and m not in ('airflow_provider_kbatch',) and not m.startswith('airflow_provider_kbatch.runtime'))\n"
        "print(','.join(bad))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = [m for m in proc.stdout.strip().split(",") if m]
    assert loaded == []
    assert "airflow_provider_kbatch.spec" not in proc.stdout
