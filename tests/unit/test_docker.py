"""The Docker images cannot be built on this machine (no container runtime), so their contents are
checked here: the worker image's COPY lines, laid out as the image would have them, must be
enough to run every example stage that the example DAGs name, with no Airflow and no Kubernetes
client (`python -S`: no site-packages at all), and its smoke-test RUN line must name them all."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "docker" / "worker.Dockerfile"
AIRFLOW = REPO / "docker" / "airflow.Dockerfile"


def _instructions(path: Path) -> list[str]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _stage_modules() -> set[str]:
    """Every `python -m airflow_provider_kbatch.examples.X` command in the example DAGs."""
    found: set[str] = set()
    for dag in (REPO / "dags" / "examples").glob("*.py"):
        found |= set(re.findall(r"airflow_provider_kbatch\.examples\.(\w+)", dag.read_text()))
        if "_module(" in dag.read_text():
            found |= set(re.findall(r'_module\("(\w+)"\)', dag.read_text()))
    return found


def test_base_images_are_pinned():
    for path in (WORKER, AIRFLOW):
        froms = [line.split()[1] for line in _instructions(path) if line.startswith("FROM ")]
        assert froms, path
        for image in froms:
            assert ":" in image and not image.endswith(":latest"), f"{path.name}: unpinned base {image}"


def test_worker_image_layout_runs_every_example_stage_without_airflow(tmp_path):
    app = tmp_path / "app"
    for line in _instructions(WORKER):
        if line.startswith("COPY "):
            src, dest = line.split()[1:3]
            target = app / Path(dest).relative_to("/app")
            source = REPO / src
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, target)
    stages = _stage_modules()
    assert {"square", "ingest", "transform", "publish", "checkpointed"} <= stages
    smoke = next(line for line in _instructions(WORKER) if line.startswith("RUN python -c"))
    for stage in stages:
        assert f"airflow_provider_kbatch.examples.{stage}" in smoke, f"smoke test misses {stage}"
    imports = "; ".join(f"import airflow_provider_kbatch.examples.{s}" for s in sorted(stages))
    check = (
        f"import sys; sys.path.insert(0, {str(app)!r}); from airflow_provider_kbatch import runtime; {imports}; "
        "assert 'airflow' not in sys.modules and 'kubernetes' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-S", "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_airflow_image_installs_the_provider_at_the_tested_airflow_version():
    lines = _instructions(AIRFLOW)
    base = next(line for line in lines if line.startswith("FROM "))
    assert "apache/airflow:3.3.2" in base
    assert any(
        "apache-airflow==3.3.2" in line and "/opt/kbatch" in line for line in lines if line.startswith("RUN ")
    )
