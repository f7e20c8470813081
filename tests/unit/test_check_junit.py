"""The CI gate: a run that skipped integration or e2e tests, or ran none, must fail."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_junit.py"


def _check_junit():
    spec = importlib.util.spec_from_file_location("check_junit", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case(classname: str, name: str, body: str = "") -> str:
    return f'<testcase classname="{classname}" name="{name}">{body}</testcase>'


def _write(tmp_path: Path, *cases: str) -> str:
    path = tmp_path / "results.xml"
    path.write_text(f"<testsuites><testsuite>{''.join(cases)}</testsuite></testsuites>")
    return str(path)


def test_passes_when_integration_and_e2e_ran_and_prints_recorded_figures(tmp_path, capsys) -> None:
    figure = '<properties><property name="latency_s" value="0.61"/></properties>'
    path = _write(
        tmp_path,
        _case("tests.unit.test_a", "u"),
        _case("tests.integration.test_b", "i", figure),
        _case("tests.e2e.test_c", "e"),
    )
    assert _check_junit().main(path) == 0
    out = capsys.readouterr().out
    assert "1 integration and 1 e2e tests ran" in out
    assert "measured: i: latency_s = 0.61" in out


@pytest.mark.parametrize(
    ("cases", "complaint"),
    [
        ([_case("tests.unit.test_a", "u"), _case("tests.e2e.test_c", "e")], "no integration test ran"),
        ([_case("tests.integration.test_b", "i")], "no e2e test ran"),
        (
            [
                _case("tests.integration.test_b", "i", '<skipped message="no cluster"/>'),
                _case("tests.e2e.test_c", "e"),
            ],
            "skipped: tests.integration.test_b::i",
        ),
    ],
)
def test_fails_when_a_kind_did_not_run_or_was_skipped(tmp_path, capsys, cases, complaint) -> None:
    assert _check_junit().main(_write(tmp_path, *cases)) == 1
    assert complaint in capsys.readouterr().err
