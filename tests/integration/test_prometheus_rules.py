"""The shipped Prometheus rules pass ``promtool check rules`` and their unit tests
(``promtool test rules`` with fixture series that fire and that must not), with the real promtool
built from the Go module proxy (``devcluster/tools.py``, cached like the control plane)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from airflow_provider_kbatch.devcluster.tools import tool_path

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return tool_path("promtool")


def run(promtool: Path, *args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(1800)  # a cold build of promtool takes minutes; a warm start none
def test_promtool_checks_and_tests_the_shipped_rules(promtool: Path) -> None:
    checked = run(promtool, "check", "rules", "kbatch-rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout + checked.stderr
    tests = sorted(str(p.relative_to(PROMETHEUS)) for p in (PROMETHEUS / "tests").glob("*.yaml"))
    assert tests
    tested = run(promtool, "test", "rules", *tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_fails_a_fixture_whose_expectation_is_wrong(promtool: Path, tmp_path: Path) -> None:
    """The fixtures can fail: expecting no stage alert for the failing stage is reported."""
    shutil.copy(PROMETHEUS / "kbatch-rules.yaml", tmp_path / "kbatch-rules.yaml")
    (tmp_path / "tests").mkdir()
    fixture = (PROMETHEUS / "tests" / "kbatch-rules-test.yaml").read_text()
    broken = fixture.replace("      - eval_time: 10m  # failing", "      - eval_time: 90m  # failing", 1)
    assert broken != fixture
    (tmp_path / "tests" / "broken.yaml").write_text(broken)
    tested = run(promtool, "test", "rules", "tests/broken.yaml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "KbatchStageFailureRateHigh" in tested.stdout + tested.stderr
