from __future__ import annotations

import copy

import pytest

from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.pipeline.manifests import (
    FileEntry,
    ManifestError,
    manifest_digest,
    parse_manifest,
    split_output_summary,
)
from airflow_provider_kbatch.runtime import manifest as runtime_manifest
from airflow_provider_kbatch.spec.intervals import IndexSet

SHA = "0" * 64
GOOD = {
    "schema_version": 1,
    "kind": "kbatch.manifest",
    "stage": "ingest",
    "run_id": "r",
    "image": None,
    "indexes": "0-7",
    "files": [{"path": "a.jsonl", "size": 3, "sha256": SHA, "records": 1}],
    "bytes": 3,
    "records": 1,
    "contract": {"name": "events", "version": "1.0", "fields": {"id": "int"}},
    "created_at": "2024-05-01T00:00:00Z",
}


def test_parse_manifest() -> None:
    m = parse_manifest(GOOD)
    assert m.indexes == IndexSet.full(8)
    assert m.files == (FileEntry("a.jsonl", 3, SHA, 1),)
    assert m.contract == Contract("events", "1.0", {"id": "int"})
    assert m.digest == manifest_digest(GOOD) == runtime_manifest.manifest_digest(GOOD)
    assert m.to_dict() == GOOD


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("schema_version", 2, "schema_version: found 2, this kbatch understands up to 1"),
        ("schema_version", None, "schema_version: expected a positive integer"),
        ("kind", "kbatch.part", "kind: expected 'kbatch.manifest'"),
        ("bytes", 4, "bytes: expected 3"),
        ("files", [{"path": "../a", "size": 3, "sha256": SHA}], "files[0]: file path '../a'"),
        ("contract", {"name": "events", "version": "one"}, "contract"),
    ],
)
def test_parse_manifest_errors(field: str, value, fragment: str) -> None:
    bad = copy.deepcopy(GOOD)
    bad[field] = value
    with pytest.raises(ManifestError) as err:
        parse_manifest(bad)
    assert str(err.value).startswith("data manifest: ")
    assert fragment in str(err.value)


def test_digest_changes_with_content() -> None:
    other = copy.deepcopy(GOOD)
    other["files"][0]["sha256"] = "1" * 64
    assert manifest_digest(other) != manifest_digest(GOOD)
    assert manifest_digest(dict(reversed(list(GOOD.items())))) == manifest_digest(GOOD)


@pytest.mark.parametrize(
    ("result", "user", "digest"),
    [
        ({"rows": 1}, {"rows": 1}, None),
        (
            {"rows": 1, "_kbatch_output": {"manifest_digest": "sha256:ab", "bytes": 3, "records": None}},
            {"rows": 1},
            "sha256:ab",
        ),
        ({"_kbatch_output": "garbage"}, {}, None),
    ],
)
def test_split_output_summary(result: dict, user: dict, digest: str | None) -> None:
    got_user, summary = split_output_summary(result)
    assert got_user == user
    assert (summary.manifest_digest if summary else None) == digest
