from __future__ import annotations

import copy
import hashlib

import pytest

from airflow_provider_kbatch.runtime import manifest as fmt

SHA = "a" * 64


def good_manifest() -> dict:
    return {
        "schema_version": 1,
        "kind": "kbatch.manifest",
        "stage": "ingest",
        "run_id": "r1",
        "image": "img:1",
        "indexes": "0-1",
        "files": [
            {"path": "a.jsonl", "size": 10, "sha256": SHA, "records": 2},
            {"path": "b/c.bin", "size": 5, "sha256": SHA, "records": None},
        ],
        "bytes": 15,
        "records": 2,
        "contract": {"name": "events", "version": "1.0", "fields": {"id": "int"}},
        "created_at": "2024-05-01T00:00:00Z",
    }


def test_good_manifest_has_no_errors() -> None:
    assert fmt.manifest_errors(good_manifest()) == []


def _set(path: str, value):
    def apply(m: dict) -> dict:
        target = m
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if value is KeyError:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
        return m

    return apply


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (_set("schema_version", 2), "schema_version: found 2, this kbatch understands up to 1"),
        (_set("schema_version", "1"), "schema_version: expected a positive integer"),
        (_set("schema_version", 0), "schema_version: expected a positive integer"),
        (_set("kind", "kbatch.part"), "kind: expected 'kbatch.manifest'"),
        (_set("stage", ""), "stage: expected a non-empty string"),
        (_set("run_id", KeyError), "run_id: expected a non-empty string"),
        (_set("image", 3), "image: expected a string or null"),
        (_set("indexes", "2,1"), "indexes: indexes '2,1'"),
        (_set("files", {}), "files: expected a list"),
        (_set("files.0.path", "../x"), "files[0]: file path '../x'"),
        (_set("files.0.path", "/abs"), "files[0]: file path '/abs'"),
        (_set("files.0.path", "_kbatch/manifest.json"), "reserved"),
        (_set("files.0.path", "a//b"), "normalised relative path"),
        (_set("files.0.size", -1), "files[0].size"),
        (_set("files.0.sha256", "ABC"), "files[0].sha256"),
        (_set("files.0.records", True), "files[0].records"),
        (_set("files.1.path", "a.jsonl"), "files[1]: duplicate path 'a.jsonl'"),
        (_set("bytes", 14), "bytes: expected 15 (sum of file sizes), found 14"),
        (_set("records", None), "records: expected 2 (sum of file records), found None"),
        (_set("contract", {"name": "e"}), "contract: contract 'e': version None"),
    ],
)
def test_manifest_errors(change, fragment: str) -> None:
    errors = fmt.manifest_errors(change(copy.deepcopy(good_manifest())))
    assert any(fragment in e for e in errors), errors


def test_part_kind_needs_index() -> None:
    part = good_manifest()
    part["kind"] = "kbatch.part"
    del part["indexes"]
    assert fmt.manifest_errors(part, kind=fmt.KIND_PART) == [
        "index: expected a non-negative integer, found None"
    ]
    part["index"] = 3
    assert fmt.manifest_errors(part, kind=fmt.KIND_PART) == []


def test_digest_is_canonical() -> None:
    a = good_manifest()
    b = dict(reversed(list(a.items())))
    assert fmt.manifest_digest(a) == fmt.manifest_digest(b)
    assert fmt.manifest_digest(a) == "sha256:" + hashlib.sha256(fmt.canonical_json(a)).hexdigest()
    b["records"] = 3
    assert fmt.manifest_digest(a) != fmt.manifest_digest(b)


def test_total_records() -> None:
    assert fmt.total_records([]) is None
    assert fmt.total_records([{"records": None}]) is None
    assert fmt.total_records([{"records": 0}, {"records": None}, {"records": 5}]) == 5


def test_summary_is_small() -> None:
    m = good_manifest()
    m["contract"]["fields"] = {f"field{i}": "str" for i in range(500)}
    s = fmt.summary(m)
    assert s["contract"] == {"name": "events", "version": "1.0"}
    assert s["manifest_digest"] == fmt.manifest_digest(m)
    assert len(fmt.canonical_json(s)) < 400
