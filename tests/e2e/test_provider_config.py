"""The ``[kbatch]`` section as Airflow's own CLI sees it: every option the provider reads is
declared in the provider info, so ``airflow config get-value`` / ``config list`` know it, with its
default, and an environment variable still overrides it.

No cluster and no metadata database: a fresh AIRFLOW_HOME is all ``airflow config`` needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_kbatch import get_provider_info

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def airflow_config(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("airflow_config_home")
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    base.update({"AIRFLOW_HOME": str(home), "PYTHONPATH": str(REPO), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "config", *args],
            env={**base, **env},
            cwd=home,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def _value(proc: subprocess.CompletedProcess[str]) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "not found" not in out, out[-3000:]
    return proc.stdout.strip().splitlines()[-1].strip()


@pytest.mark.parametrize(
    ("option", "default"), [("trigger_event_hold_seconds", "6.0"), ("default_deferrable", "True")]
)
def test_config_get_value_knows_every_kbatch_option_and_its_default(airflow_config, option, default):
    assert _value(airflow_config("get-value", "kbatch", option)) == default


def test_an_environment_variable_overrides_the_declared_default(airflow_config):
    proc = airflow_config(
        "get-value", "kbatch", "trigger_event_hold_seconds", AIRFLOW__KBATCH__TRIGGER_EVENT_HOLD_SECONDS="0"
    )
    assert _value(proc) == "0"


def test_config_list_shows_the_section_with_every_option(airflow_config):
    proc = airflow_config("list", "--section", "kbatch")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[kbatch]" in proc.stdout
    for option in get_provider_info()["config"]["kbatch"]["options"]:
        assert option in proc.stdout, option
