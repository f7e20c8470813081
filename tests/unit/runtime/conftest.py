from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from airflow_provider_kbatch.runtime import results


@pytest.fixture
def set_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Clear every KBATCH_* / JOB_COMPLETION_INDEX variable, then set the given ones."""
    for name in list(os.environ):
        if name.startswith("KBATCH_") or name == "JOB_COMPLETION_INDEX":
            monkeypatch.delenv(name)

    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return apply


@pytest.fixture
def stage_env(set_env: Callable[..., None], tmp_path) -> dict[str, str]:
    """A plausible pod environment with an output dir, a termination-log file and index 0."""
    values = {
        "KBATCH_RUN_ID": "manual__2024-05-01T00:00:00+00:00",
        "KBATCH_STAGE": "ingest",
        "KBATCH_IMAGE": "example/worker:1.0",
        "KBATCH_OUTPUT_DIR": str(tmp_path / "out"),
        "KBATCH_TERMINATION_MESSAGE_PATH": str(tmp_path / "termination-log"),
        "KBATCH_INDEX": "0",
    }
    set_env(**values)
    return values


@pytest.fixture(autouse=True)
def fresh_result_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper remembers the last result per process; each test starts with none."""
    monkeypatch.setattr(results, "_default", results.ResultChannel())
