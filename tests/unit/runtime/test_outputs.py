from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from airflow_provider_kbatch import runtime
from airflow_provider_kbatch.runtime import manifest as fmt
from airflow_provider_kbatch.runtime.errors import ContractViolation, ManifestError
from airflow_provider_kbatch.runtime.outputs import OutputWriter, finalize_manifest

CONTRACT = {"name": "events", "version": "1.0", "fields": {"id": "int", "name": "str"}}


def write_index(out: Path, i: int, *, rows: int = 2, **kwargs) -> OutputWriter:
    w = OutputWriter(out, index=i, **kwargs)
    w.write_jsonl(f"part-{i:05d}.jsonl", ({"id": n, "name": f"n{n}"} for n in range(rows)))
    return w


def test_writer_records_files_and_publishes_part(stage_env, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputWriter(contract=CONTRACT) as w:
        entry = w.write_jsonl("data/part-0.jsonl", [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        w.write_text("notes.txt", "hello")
        (out / "external.bin").write_bytes(b"\x00" * 7)
        w.add("external.bin", records=1)
    data = (out / "data/part-0.jsonl").read_bytes()
    assert entry == {
        "path": "data/part-0.jsonl",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "records": 2,
    }
    part = json.loads((out / "_kbatch/parts/0.json").read_bytes())
    assert fmt.manifest_errors(part, kind=fmt.KIND_PART) == []
    assert (
        part["stage"] == "ingest"
        and part["run_id"] == stage_env["KBATCH_RUN_ID"]
        and part["image"] == "example/worker:1.0"
    )
    assert [f["path"] for f in part["files"]] == ["data/part-0.jsonl", "external.bin", "notes.txt"]
    assert part["bytes"] == len(data) + 7 + 5 and part["records"] == 3
    assert part["contract"] == CONTRACT
    assert not [p for p in out.rglob("*") if p.name.startswith(".kbatch-tmp-")]


def test_exception_in_block_publishes_nothing(stage_env, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), OutputWriter() as w:  # noqa: PT012 -- a stage that crashes mid-block
        w.write_text("a.txt", "x")
        raise RuntimeError("stage crashed")
    assert not (tmp_path / "out/_kbatch").exists()


def test_contract_violation_publishes_nothing(stage_env, tmp_path: Path) -> None:
    w = OutputWriter(contract=CONTRACT)
    with pytest.raises(
        ContractViolation, match=r"stage 'ingest': p.jsonl record 1: field 'id': expected int, found str"
    ):
        w.write_jsonl("p.jsonl", [{"id": 1, "name": "a"}, {"id": "2", "name": "b"}])
    assert not (tmp_path / "out/p.jsonl").exists()
    assert w.files == []
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_contract_from_env_and_validate_off(stage_env, set_env, tmp_path: Path) -> None:
    set_env(KBATCH_OUTPUT_CONTRACT=json.dumps(CONTRACT))
    w = OutputWriter()
    assert w.contract == CONTRACT
    w.write_jsonl("p.jsonl", [{"id": "not checked"}], validate=False)
    assert w.files[0]["records"] == 1


@pytest.mark.parametrize("relpath", ["../escape.txt", "/abs.txt", "_kbatch/manifest.json", "a/../../b"])
def test_paths_outside_the_output_are_refused(stage_env, relpath: str) -> None:
    with pytest.raises(ValueError, match="file path"):
        OutputWriter().write_text(relpath, "x")


def test_add_missing_file(stage_env) -> None:
    with pytest.raises(ManifestError, match=r"output file 'nope.bin': not found"):
        OutputWriter().add("nope.bin")


def test_finalize_merges_parts_deterministically(stage_env, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for i in (2, 0, 1):
        write_index(out, i, rows=i + 1, contract=CONTRACT).commit()
    first = finalize_manifest(expected="0-2")
    raw = (out / "_kbatch/manifest.json").read_bytes()
    assert fmt.manifest_errors(first) == []
    assert first["indexes"] == "0-2"
    assert [f["path"] for f in first["files"]] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert first["records"] == 6 and first["bytes"] == sum(f["size"] for f in first["files"])
    assert first["contract"] == CONTRACT and first["image"] == "example/worker:1.0"
    assert runtime.manifest_digest(first) == "sha256:" + hashlib.sha256(raw).hexdigest()
    # Finalizing again (another index finishing at the same moment) writes the same bytes.
    assert finalize_manifest(expected=3) == first
    assert (out / "_kbatch/manifest.json").read_bytes() == raw
    # ... and its summary went to the termination message.
    result = json.loads((tmp_path / "termination-log").read_text())
    assert result["_kbatch_output"]["manifest_digest"] == runtime.manifest_digest(first)


def test_last_index_to_commit_finalizes(stage_env, set_env, tmp_path: Path) -> None:
    set_env(KBATCH_STAGE_INDEXES="0-2")
    out = tmp_path / "out"
    write_index(out, 0).commit()
    write_index(out, 2).commit()
    assert not (out / "_kbatch/manifest.json").exists()
    write_index(out, 1).commit()
    assert json.loads((out / "_kbatch/manifest.json").read_bytes())["indexes"] == "0-2"


@pytest.mark.parametrize(
    ("setup", "kwargs", "fragment"),
    [
        ("missing", {"expected": "0-3"}, "no part manifest for indexes 3 (of 0-3)"),
        (
            "other_run",
            {"expected": "0-2"},
            "run_id: expected 'manual__2024-05-01T00:00:00+00:00', found 'other' (stale data",
        ),
        ("dup", {"expected": "0-2"}, "file 'shared.txt' is claimed by the parts of index 0 and index 1"),
        ("truncated", {"expected": "0-2"}, "file 'part-00001.jsonl': expected"),
        ("tampered", {"expected": "0-2", "rehash": True}, "file 'part-00001.jsonl': expected sha256"),
        ("deleted", {"expected": "0-2"}, "file 'part-00001.jsonl': listed in a part manifest but missing"),
        ("contracts", {"expected": "0-2"}, "parts disagree on contract"),
        ("bad_part", {"expected": "0-2"}, "part manifest"),
    ],
)
def test_finalize_errors(stage_env, tmp_path: Path, setup: str, kwargs: dict, fragment: str) -> None:
    out = tmp_path / "out"
    for i in range(3):
        w = write_index(out, i, run_id="other" if (setup == "other_run" and i == 2) else None)
        if setup == "dup" and i < 2:
            w.write_text("shared.txt", "same")
        if setup == "contracts":
            w.contract = CONTRACT if i == 0 else None
        w.commit(finalize=False)
    target = out / "part-00001.jsonl"
    if setup == "truncated":
        target.write_bytes(target.read_bytes()[:-1])
    elif setup == "tampered":
        data = bytearray(target.read_bytes())
        data[0] = ord("[")
        target.write_bytes(bytes(data))
    elif setup == "deleted":
        target.unlink()
    elif setup == "bad_part":
        (out / "_kbatch/parts/1.json").write_text("{not json")
    with pytest.raises(ManifestError) as err:
        finalize_manifest(**kwargs)
    assert fragment in str(err.value)
    assert not (out / "_kbatch/manifest.json").exists()


def test_finalize_leaves_out_parts_outside_expected(stage_env, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for i in range(3):
        write_index(out, i).commit()
    merged = finalize_manifest(expected=2, attach_result=False)
    assert merged["indexes"] == "0-1"
    assert [f["path"] for f in merged["files"]] == ["part-00000.jsonl", "part-00001.jsonl"]


def test_finalize_without_expected_takes_every_part(stage_env, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for i in (0, 5):
        write_index(out, i).commit()
    (out / "_kbatch/parts/.kbatch-tmp-7.json-1-ab").write_text("partial")
    assert finalize_manifest(attach_result=False)["indexes"] == "0,5"


def test_empty_output_finalizes(stage_env, tmp_path: Path) -> None:
    OutputWriter().commit(finalize=True)
    merged = json.loads((tmp_path / "out/_kbatch/manifest.json").read_bytes())
    assert merged["files"] == [] and merged["bytes"] == 0 and merged["records"] is None


def test_attach_failure_does_not_fail_finalize(stage_env, set_env, tmp_path: Path, capsys) -> None:
    set_env(KBATCH_TERMINATION_MESSAGE_PATH=str(tmp_path / "no-such-dir" / "log"))
    write_index(tmp_path / "out", 0).commit()
    finalize_manifest()
    assert "could not attach the output summary" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "out/_kbatch/manifest.json")
