from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_kbatch.runtime import checkpoint
from airflow_provider_kbatch.runtime.checkpoint import Checkpoint


@pytest.mark.parametrize(
    "value",
    [{"next_row": 1000, "seen": ["a", "b"]}, [1, 2, 3], "text", 0, None, b"\x00\x01raw", bytearray(b"ba")],
)
def test_save_load_roundtrip(tmp_path: Path, value) -> None:
    ck = Checkpoint(directory=tmp_path)
    assert not ck.exists()
    ck.save(value)
    assert ck.exists()
    loaded = ck.load()
    assert loaded == (bytes(value) if isinstance(value, bytearray) else value)
    assert [p.name for p in tmp_path.iterdir()] == [
        ("state.bin" if isinstance(value, (bytes, bytearray)) else "state.json")
    ]


def test_load_missing(tmp_path: Path) -> None:
    ck = Checkpoint("progress", directory=tmp_path)
    assert ck.load(default={"n": 0}) == {"n": 0}
    assert ck.load(None) is None
    with pytest.raises(FileNotFoundError, match="no checkpoint 'progress'"):
        ck.load()


def test_changing_kind_replaces_the_other(tmp_path: Path) -> None:
    ck = Checkpoint(directory=tmp_path)
    ck.save(b"raw")
    ck.save({"n": 1})
    assert not ck.bytes_path.exists()
    assert ck.load() == {"n": 1}
    ck.save(b"again")
    assert not ck.json_path.exists()
    assert ck.load() == b"again"


def test_newest_wins_after_a_crash_between_rename_and_unlink(tmp_path: Path) -> None:
    ck = Checkpoint(directory=tmp_path)
    ck.json_path.write_text('{"old": true}')
    ck.bytes_path.write_bytes(b"new")
    os.utime(ck.json_path, ns=(1_000_000_000, 1_000_000_000))
    assert ck.load() == b"new"


def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    ck = Checkpoint(directory=tmp_path)
    ck.save({"n": 1})

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        ck.save({"n": 2})
    monkeypatch.undo()
    assert ck.load() == {"n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_clear(tmp_path: Path) -> None:
    ck = Checkpoint(directory=tmp_path)
    ck.save({"n": 1})
    ck.clear()
    assert not ck.exists()


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "-x", "x" * 129])
def test_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="checkpoint name"):
        Checkpoint(name, directory=tmp_path)


def test_non_json_value(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        Checkpoint(directory=tmp_path).save({"x": object()})


def test_module_functions_use_the_logical_index_dir(set_env, tmp_path: Path) -> None:
    # Resumed attempt: Job-local index 1 runs logical index 8; the checkpoint written by the
    # first attempt's logical index 8 must be found.
    set_env(KBATCH_CHECKPOINT_DIR=str(tmp_path), KBATCH_INDEX="8")
    checkpoint.save({"next_row": 500})
    set_env(KBATCH_INDEX_MAP="3,8", JOB_COMPLETION_INDEX="1", KBATCH_INDEX="1")
    assert checkpoint.exists()
    assert checkpoint.load() == {"next_row": 500}
    assert (tmp_path / "8" / "state.json").is_file()
    assert not checkpoint.exists("other")
