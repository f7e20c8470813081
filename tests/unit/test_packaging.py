"""What pyproject.toml declares is what the suite tests."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def _requirement(name: str) -> Requirement:
    found = [Requirement(r) for r in PYPROJECT["project"]["dependencies"] if Requirement(r).name == name]
    assert len(found) == 1, name
    return found[0]


def _floor(req: Requirement) -> Version:
    floors = [Version(s.version) for s in req.specifier if s.operator == ">="]
    assert len(floors) == 1, req
    return floors[0]


def test_the_suite_runs_on_the_oldest_supported_airflow_minor() -> None:
    """The floor's minor is the installed one: the oldest supported Airflow is the one tested.
    Raising the installed Airflow to a newer minor needs the floor raised too, or a second run of
    the suite on the floor's minor."""
    airflow = _requirement("apache-airflow")
    installed = Version(version("apache-airflow"))
    floor = _floor(airflow)
    assert installed in airflow.specifier
    assert (installed.major, installed.minor) == (floor.major, floor.minor)
    assert "postgres" in airflow.extras  # the deployment tests run on PostgreSQL


def test_python_floor_matches_the_tools() -> None:
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + floor.replace(".", "")
    assert PYPROJECT["tool"]["mypy"]["python_version"] == floor
