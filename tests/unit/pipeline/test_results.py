"""pipeline/results.py: the XCom's inline budget, the results ConfigMaps' chunks, which results count."""

from __future__ import annotations

import json
import random

import pytest

from airflow_provider_kbatch.pipeline import records
from airflow_provider_kbatch.pipeline import results as rules
from airflow_provider_kbatch.spec import names

REF = rules.results_ref("ns", "etl", "r1", "crunch")


def _size(obj: object) -> int:
    return len(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


def _results(n: int, size: int = 2000) -> dict[int, dict[str, object]]:
    return {i: {"i": i, "pad": "é" * ((size - 20) // 2)} for i in range(n)}  # 2-byte characters


@pytest.mark.parametrize("n", [0, 1, 10, 24, 25, 1000])
def test_the_inline_part_is_the_lowest_indexes_within_the_budget(n: int) -> None:
    results = _results(n)
    fields = rules.xcom_fields(results, REF)
    inline = fields["results"]
    assert _size(inline) <= rules.INLINE_BUDGET_BYTES
    assert list(inline) == [str(i) for i in range(len(inline))] and fields["results_inline"] == len(inline)
    assert fields["results_total"] == n
    assert fields["results_ref"] == (REF if n else None)
    if len(inline) < n:  # the next one would not have fit
        assert _size({**inline, str(len(inline)): results[len(inline)]}) > rules.INLINE_BUDGET_BYTES


def test_the_inline_budget_is_exact() -> None:
    results = {0: {"a": "x" * 10}, 1: {"b": "y" * 10}}
    exact = _size({str(k): v for k, v in results.items()})
    assert rules.inline_results(results, exact) == {"0": results[0], "1": results[1]}
    assert rules.inline_results(results, exact - 1) == {"0": results[0]}
    assert rules.inline_results(results, 2) == {}


def test_a_result_over_the_termination_message_limit_ends_the_inline_part() -> None:
    results = {0: {"a": 1}, 1: {"big": "x" * rules.MAX_RESULT_BYTES}, 2: {"c": 3}}
    assert rules.inline_results(results) == {"0": {"a": 1}}


def test_chunks_hold_every_result_under_the_budget_in_index_order() -> None:
    results = _results(1000)
    shuffled = dict(random.Random(3).sample(sorted(results.items()), k=len(results)))
    chunks = rules.chunk_results(shuffled)
    assert chunks == rules.chunk_results(results)  # deterministic, whatever the order of arrival
    assert len(chunks) == 3
    for chunk in chunks:
        assert sum(len(k) + len(v.encode()) for k, v in chunk.items()) <= rules.CHUNK_BUDGET_BYTES
    keys = [int(k) for chunk in chunks for k in chunk]
    assert keys == list(range(1000))
    assert {int(k): json.loads(v) for chunk in chunks for k, v in chunk.items()} == results
    assert rules.chunk_results({}) == []


def _bodies(job: str = "kb-etl-crunch-0123456789-g1", uid: str = "0f0e0d0c-aaaa", **kw: object) -> list[dict]:
    args: dict = dict(
        dag_id="etl", run_id="r1", task_id="crunch", map_index=-1, job=job, uid=uid, generation=1,
        spec_hash="h1", results=_results(1000),
        owner={"metadata": {"name": records.ledger_name("etl", "r1"), "uid": "uid-ledger"}},
    )  # fmt: skip
    args.update(kw)
    return rules.results_config_maps(**args)


def test_results_configmaps_are_labelled_annotated_and_owned_by_the_ledger() -> None:
    bodies = _bodies()
    assert [b["metadata"]["name"] for b in bodies] == [
        f"kbatch-results-kb-etl-crunch-0123456789-g1-0f0e0d0c-{i}" for i in range(3)
    ]
    for number, body in enumerate(bodies):
        meta = body["metadata"]
        assert names.is_dns1123_subdomain(meta["name"])
        stored = sum(len(k.encode()) + len(v.encode()) for k, v in body["data"].items())
        assert (
            stored + len(json.dumps(meta, ensure_ascii=False).encode()) < 900 * 1024
        )  # what the server counts
        assert meta["labels"][rules.LABEL_RESULTS] == "true" and meta["labels"]["kbatch.io/attempt"] == "1"
        assert meta["annotations"][rules.ANNOTATION_CHUNK] == f"{number}/3"
        assert (
            meta["annotations"]["kbatch.io/run-id"] == "r1"
            and meta["annotations"]["kbatch.io/spec-hash"] == "h1"
        )
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": records.ledger_name("etl", "r1"),
                "uid": "uid-ledger",
            }
        ]
        selector = dict(
            part.split("=", 1) for part in rules.results_selector("etl", "r1", "crunch").split(",")
        )
        assert selector.items() <= meta["labels"].items()


def test_stored_attempts_join_chunks_order_attempts_and_ignore_other_task_instances() -> None:
    second = _bodies(
        job="kb-etl-crunch-0123456789-g2", uid="11112222", generation=2, results={5: {"again": 5}}
    )
    foreign = _bodies(job="kb-x-g1", uid="33334444", results={1: {"theirs": 1}})
    for body in foreign:
        body["metadata"]["annotations"]["kbatch.io/run-id"] = "r2"  # labels collide, annotations do not
    config_maps = [*second, *reversed(_bodies()), *foreign]
    attempts = rules.stored_attempts(config_maps, dag_id="etl", run_id="r1", task_id="crunch")
    assert [(a.generation, len(a.results)) for a in attempts] == [(1, 1000), (2, 1)]
    merged = rules.merge_results(attempts, spec_hash="h1")
    assert merged == {**_results(1000), 5: {"again": 5}}  # the later attempt wins
    assert rules.merge_results(attempts, spec_hash="other") == {}
    assert rules.merge_results(attempts, spec_hash="other", preview={"7": {"p": 7}}) == {7: {"p": 7}}


def _record(attempts: list[dict]) -> records.StageRecord:
    data = {}
    key = records.stage_key("crunch")
    for a in attempts:
        data = records.record_attempt_started(data, key, try_number=1, job=a["job"], uid=a["uid"],
                                              spec_hash=a.get("spec", "h1"), index_map="0-9", at="t")  # fmt: skip
        data = records.record_attempt_finished(data, key, job=a["job"], uid=a["uid"], succeeded=False, at="t",
                                               results=a.get("results"))  # fmt: skip
        if a.get("legacy"):
            raw = json.loads(data[key])
            del raw["attempts"][-1]["results"]
            data[key] = json.dumps(raw)
    record = records.read_stage(data, key)
    assert record is not None
    return record


def test_when_results_configmaps_are_read() -> None:
    none = _record([{"job": "j1", "uid": "u1"}])
    assert not rules.has_stored_results(none) and rules.legacy_preview(none) is None
    some = _record([{"job": "j1", "uid": "u1", "results": {0: {"a": 1}}}, {"job": "j2", "uid": "u2"}])
    assert rules.has_stored_results(some) and rules.has_stored_results(some, besides=("j2", "u2"))
    assert not rules.has_stored_results(some, besides=("j1", "u1"))
    other_spec = _record(
        [{"job": "j1", "uid": "u1", "results": {0: {}}, "spec": "old"}, {"job": "j2", "uid": "u2"}]
    )
    assert not rules.has_stored_results(other_spec)
    legacy = _record([{"job": "j1", "uid": "u1", "results": {0: {"a": 1}}, "legacy": True}])
    assert rules.legacy_preview(legacy) == {0: {"a": 1}}
    assert not rules.has_stored_results(None) and rules.legacy_preview(None) is None
