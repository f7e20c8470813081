"""One rule for ``deferrable`` in every kbatch class, and the ``[kbatch]`` options declared.

The rule (``glue.settings.resolve_deferrable``): an explicit ``deferrable`` wins; else a sensor
given an explicit ``mode=`` waits that way; else ``[kbatch] default_deferrable`` (default True).
``[operators] default_deferrable`` is not read (its False default is written out in every
generated airflow.cfg, so it cannot say "deferrable by default" and "explicitly off" apart).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import airflow_provider_kbatch
from airflow_provider_kbatch import get_provider_info
from airflow_provider_kbatch.glue import settings
from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.sensors import output as output_sensor
from airflow_provider_kbatch.sensors.job import KbatchJobSensor

KBATCH = "AIRFLOW__KBATCH__DEFAULT_DEFERRABLE"
OPERATORS = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv(KBATCH, raising=False)
    monkeypatch.delenv(OPERATORS, raising=False)
    yield monkeypatch
    monkeypatch.delenv(KBATCH, raising=False)
    importlib.reload(output_sensor)  # the output sensor's default is read at import


def _deferrable(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    output = importlib.reload(output_sensor).KbatchOutputSensor
    return {
        "operator": KbatchJobOperator(task_id="t", image="i").deferrable,
        "job sensor": KbatchJobSensor(task_id="s", job_name="j").deferrable,
        "output sensor": output(task_id="o", external_dag_id="d", run_id="r", output_name="x").deferrable,
    }


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, True, id="default: deferrable"),
        pytest.param({KBATCH: "False"}, False, id="kbatch-false-turns-it-off"),
        pytest.param({KBATCH: "True", OPERATORS: "False"}, True, id="operators-option-is-not-read"),
        pytest.param({OPERATORS: "False"}, True, id="generated-airflow-cfg-false"),
        pytest.param({KBATCH: "false", OPERATORS: "True"}, False, id="kbatch-wins"),
    ],
)
def test_one_rule_for_every_class(config: pytest.MonkeyPatch, env: dict[str, str], expected: bool) -> None:
    assert _deferrable(env, config) == dict.fromkeys(("operator", "job sensor", "output sensor"), expected)


def test_an_explicit_argument_wins(config: pytest.MonkeyPatch) -> None:
    config.setenv(KBATCH, "False")
    assert KbatchJobOperator(task_id="t", image="i", deferrable=True).deferrable is True
    assert KbatchJobSensor(task_id="s", job_name="j", deferrable=True).deferrable is True
    config.setenv(KBATCH, "True")
    assert KbatchJobOperator(task_id="t", image="i", deferrable=False).deferrable is False
    assert KbatchJobSensor(task_id="s", job_name="j", deferrable=False).deferrable is False


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_a_sensor_given_a_mode_waits_that_way(config: pytest.MonkeyPatch, mode: str) -> None:
    assert KbatchJobSensor(task_id="s", job_name="j", mode=mode).deferrable is False
    assert KbatchJobSensor(task_id="s", job_name="j", mode=mode, deferrable=True).deferrable is True


def test_the_parameters_default_to_the_rule() -> None:
    for cls in (KbatchJobOperator, KbatchJobSensor):
        assert inspect.signature(cls.__init__).parameters["deferrable"].default is None, cls
        assert "[kbatch] default_deferrable" in " ".join((cls.__doc__ or "").split()), cls
    assert "[kbatch] default_deferrable" in " ".join((output_sensor.KbatchOutputSensor.__doc__ or "").split())


def test_a_typo_in_the_config_keeps_the_default(config: pytest.MonkeyPatch) -> None:
    config.setenv(KBATCH, "perhaps")
    assert settings.default_deferrable() is True


def test_deferrable_must_be_a_bool_or_none() -> None:
    with pytest.raises(TypeError, match="deferrable must be True, False or None"):
        KbatchJobOperator(task_id="t", image="i", deferrable="False")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- [kbatch] declared

_READ = re.compile(r"conf\.get\w*\(\s*(?:SECTION|\"kbatch\")\s*,\s*\"(\w+)\"")


def test_every_option_kbatch_reads_is_declared_with_its_default() -> None:
    package = Path(airflow_provider_kbatch.__file__).parent
    read = {m for path in package.rglob("*.py") for m in _READ.findall(path.read_text())}
    assert read >= {"trigger_event_hold_seconds", "default_deferrable"}, read
    options = get_provider_info()["config"]["kbatch"]["options"]
    assert set(options) == read == set(settings.DEFAULTS)
    for name, declared in options.items():
        assert declared["description"] and declared["version_added"], name
        assert str(declared["default"]) == str(settings.DEFAULTS[name]), name
    assert settings.SECTION == "kbatch"


def test_no_other_section_is_read_for_kbatch_behaviour() -> None:
    """``[operators] default_deferrable`` is the one Airflow option kbatch used to read itself."""
    package = Path(airflow_provider_kbatch.__file__).parent
    for path in package.rglob("*.py"):
        assert '"operators", "default_deferrable"' not in path.read_text(), path
