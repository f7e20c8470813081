from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_kbatch.runtime.__main__ import main
from airflow_provider_kbatch.runtime.outputs import OutputWriter


def test_index(set_env, capsys) -> None:
    set_env(KBATCH_INDEX_MAP="4,9", JOB_COMPLETION_INDEX="1")
    assert main(["index"]) == 0
    assert capsys.readouterr().out == "9\n"


def test_index_error_exit_status(set_env, capsys) -> None:
    set_env(KBATCH_INDEX="x")
    assert main(["index"]) == 1
    assert "kbatch runtime index: KBATCH_INDEX='x'" in capsys.readouterr().err


def test_finalize_then_verify(stage_env, set_env, tmp_path: Path, capsys) -> None:
    for i in range(2):
        w = OutputWriter(index=i)
        w.write_text(f"p{i}.txt", "x")
        w.commit()
    assert main(["finalize", "--expected", "0-1", "--rehash"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["indexes"] == "0-1" and summary["files"] == 2
    assert json.loads((tmp_path / "termination-log").read_text())["_kbatch_output"] == summary
    set_env(KBATCH_INPUT_UP_DIR=str(tmp_path / "out"))
    assert main(["verify", "up"]) == 0
    assert json.loads(capsys.readouterr().out) == summary
    assert main(["verify", "up", "--contract", '{"name": "c", "version": "1.0"}']) == 1
    assert "found no contract on the input" in capsys.readouterr().err
    assert main(["finalize", "--expected", "0-2"]) == 1
    assert "no part manifest for indexes 2" in capsys.readouterr().err


def test_emit_and_log(stage_env, tmp_path: Path, capsys) -> None:
    assert main(["emit", '{"rows": 1}']) == 0
    assert json.loads((tmp_path / "termination-log").read_text()) == {"rows": 1}
    assert main(["emit", "[1]"]) == 1
    assert main(["log", "hello world", "rows=3", "stream=x"]) == 0
    out = capsys.readouterr().out
    assert 'msg="hello world" rows=3 stream_=x' in out
    assert main(["log", "m", "novalue"]) == 1


def test_usage_error_exit_status() -> None:
    with pytest.raises(SystemExit) as err:
        main(["nope"])
    assert err.value.code == 2


def test_runs_as_module(set_env, tmp_path: Path) -> None:
    env = {"KBATCH_INDEX": "3", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_provider_kbatch.runtime", "index"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert (proc.returncode, proc.stdout) == (0, "3\n"), proc.stderr
