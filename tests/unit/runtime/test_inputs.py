from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_kbatch import runtime
from airflow_provider_kbatch.runtime.errors import ContractViolation, InputVerificationError
from airflow_provider_kbatch.runtime.outputs import OutputWriter, finalize_manifest

CONTRACT = {"name": "events", "version": "1.3", "fields": {"id": "int", "name": "str"}}


@pytest.fixture
def upstream(stage_env, set_env, tmp_path: Path) -> Path:
    """A finalized output of stage 'ingest', then the env of a consumer stage reading it as 'raw'."""
    out = tmp_path / "out"
    for i in range(2):
        w = OutputWriter(index=i, contract=CONTRACT)
        w.write_jsonl(f"part-{i}.jsonl", [{"id": i, "name": "x"}])
        w.commit()
    finalize_manifest(expected=2, attach_result=False)
    set_env(KBATCH_STAGE="transform", KBATCH_INPUT_RAW_DIR=str(out))
    return out


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_verify_input_returns_the_manifest(upstream: Path) -> None:
    manifest = runtime.verify_input("raw", {"name": "events", "version": "1.0", "fields": {"id": "int"}})
    assert manifest["stage"] == "ingest"
    assert [f["path"] for f in manifest["files"]] == ["part-0.jsonl", "part-1.jsonl"]


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (
            lambda d: (d / "part-1.jsonl").write_bytes(b'{"id":1,"name":"x"}\r'),
            "stage 'transform': input 'raw': file 'part-1.jsonl': expected sha256",
        ),
        (
            lambda d: (d / "part-1.jsonl").write_bytes(b"{}\n"),
            "file 'part-1.jsonl': expected 20 bytes, found 3",
        ),
        (lambda d: (d / "part-0.jsonl").unlink(), "file 'part-0.jsonl': expected 20 bytes, found no file at"),
        (lambda d: (d / "_kbatch/manifest.json").unlink(), "no manifest at"),
        (lambda d: (d / "_kbatch/manifest.json").write_text("{"), "cannot be read"),
        (
            lambda d: (d / "_kbatch/manifest.json").write_text('{"schema_version": 9}'),
            "schema_version: found 9",
        ),
    ],
)
def test_verify_input_detects_damage(upstream: Path, damage, fragment: str) -> None:
    damage(upstream)
    with pytest.raises(InputVerificationError) as err:
        runtime.verify_input("raw")
    assert fragment in str(err.value)


def test_missing_manifest_counts_parts(upstream: Path) -> None:
    (upstream / "_kbatch/manifest.json").unlink()
    with pytest.raises(
        InputVerificationError,
        match=r"\(2 part manifest\(s\) present\): the producing stage did not finalize",
    ):
        runtime.verify_input("raw")


def test_size_only_mode_skips_hashing(upstream: Path) -> None:
    (upstream / "part-1.jsonl").write_bytes(b'{"id":1,"name":"y"}\n')  # same size, other content
    runtime.verify_input("raw", rehash=False)
    with pytest.raises(InputVerificationError):
        runtime.verify_input("raw")


@pytest.mark.parametrize(
    ("accepted", "fragment"),
    [
        (
            {"name": "events", "version": "2.0", "fields": {}},
            "contract 'events' version: expected major 2 (2.0), found 1.3",
        ),
        (
            {"name": "events", "version": "1.0", "fields": {"id": "str"}},
            "stage 'transform': field 'id': expected str, found int",
        ),
        (
            {"name": "events", "version": "1.0", "fields": {"ts": "float"}},
            "field 'ts': expected float, found missing",
        ),
        ({"name": "users", "version": "1.0"}, "contract name: expected 'users', found 'events'"),
    ],
)
def test_contract_violation_fails_and_leaves_upstream_untouched(
    upstream: Path, accepted: dict, fragment: str
) -> None:
    before = snapshot(upstream)
    with pytest.raises(ContractViolation) as err:
        runtime.verify_input("raw", accepted)
    assert (
        "stage 'transform': input 'raw' (produced by stage 'ingest') violates the accepted contract"
        in str(err.value)
    )
    assert fragment in str(err.value)
    assert snapshot(upstream) == before


def test_accepted_contract_from_env(upstream: Path, set_env) -> None:
    set_env(
        KBATCH_INPUT_RAW_CONTRACT=json.dumps({"name": "events", "version": "1.0", "fields": {"zzz": "int"}})
    )
    with pytest.raises(ContractViolation, match="field 'zzz'"):
        runtime.verify_input("raw")


def test_unknown_input(upstream: Path) -> None:
    with pytest.raises(runtime.ConfigError, match="KBATCH_INPUT_CLEAN_DIR is not set"):
        runtime.verify_input("clean")
