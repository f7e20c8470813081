from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_kbatch import runtime
from airflow_provider_kbatch.runtime import results


def test_emit_result_writes_compact_json(stage_env, tmp_path: Path) -> None:
    path = runtime.emit_result({"rows": 3, "name": "é"})
    assert path == tmp_path / "termination-log"
    assert json.loads(path.read_text("utf-8")) == {"rows": 3, "name": "é"}
    runtime.emit_result({"rows": 4})  # replaces, does not append
    assert json.loads(path.read_bytes()) == {"rows": 4}


def test_default_path(set_env) -> None:
    assert results.termination_message_path() == Path("/dev/termination-log")


@pytest.mark.parametrize(
    ("size", "fits"),
    [(4096, True), (4097, False)],
)
def test_size_limit_is_4096_bytes(tmp_path: Path, size: int, fits: bool) -> None:
    overhead = len(json.dumps({"x": ""}, separators=(",", ":")))
    obj = {"x": "a" * (size - overhead)}
    channel = results.ResultChannel(tmp_path / "msg")
    if fits:
        channel.emit(obj)
        assert (tmp_path / "msg").stat().st_size == 4096
    else:
        with pytest.raises(ValueError, match="result is 4097 bytes"):
            channel.emit(obj)
        assert not (tmp_path / "msg").exists()


def test_multibyte_characters_count_as_bytes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="result is 4108 bytes"):
        results.ResultChannel(tmp_path / "m").emit({"x": "é" * 2050})


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ([1, 2], "must be a dict"),
        ({"x": object()}, "JSON-serialisable"),
        ({"x": float("nan")}, "JSON-serialisable"),
    ],
)
def test_rejects_non_json(tmp_path: Path, obj, fragment: str) -> None:
    with pytest.raises(TypeError, match=fragment):
        results.ResultChannel(tmp_path / "m").emit(obj)


def test_output_summary_is_attached(tmp_path: Path) -> None:
    channel = results.ResultChannel(tmp_path / "m")
    channel.attach_output({"manifest_digest": "sha256:ab"})
    assert json.loads((tmp_path / "m").read_text()) == {"_kbatch_output": {"manifest_digest": "sha256:ab"}}
    channel.emit({"rows": 1})
    assert json.loads((tmp_path / "m").read_text()) == {
        "rows": 1,
        "_kbatch_output": {"manifest_digest": "sha256:ab"},
    }
    channel.attach_output({"manifest_digest": "sha256:cd"})  # the last result is kept
    assert json.loads((tmp_path / "m").read_text()) == {
        "rows": 1,
        "_kbatch_output": {"manifest_digest": "sha256:cd"},
    }
