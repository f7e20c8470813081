"""The kbatch Helm chart (``deploy/helm/kbatch``) through the real ``helm`` CLI, built from the Go
module proxy by ``devcluster/tools.py`` (``make setup`` builds it; a missing binary is built here,
never skipped)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from airflow_provider_kbatch.devcluster.tools import tool_path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "kbatch"


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``helm`` in a throw-away home (no repositories, caches or state of the user's, and no
    discovery cache of an earlier cluster on the same port)."""
    binary = str(tool_path("helm"))
    with tempfile.TemporaryDirectory(prefix="kbatch-helm-") as home:
        env = {"HOME": home, "PATH": "/usr/bin:/bin"}
        env.update({f"HELM_{d}_HOME": str(Path(home) / d.lower()) for d in ("CACHE", "CONFIG", "DATA")})
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        proc = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def set_flags(values: dict[str, Any]) -> list[str]:
    """``--set-json`` flags for dotted value paths (``{"namespace.name": "x"}``)."""
    return [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]


def render(
    values: dict[str, Any] | None = None, *, show_only: str | None = None, release: str = "kbatch"
) -> str:
    """``helm template`` of the chart: the manifests as one YAML stream."""
    args = ["template", release, str(CHART), *set_flags(values or {})]
    if show_only:
        args += ["--show-only", show_only]
    return helm(*args).stdout


def documents(stream: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(stream) if d]
