from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable, Mapping

import pytest

from airflow_provider_kbatch.pipeline import records
from airflow_provider_kbatch.pipeline.records import (
    LedgerError,
    LedgerTooLarge,
    completed_for_resume,
    ledger_name,
    read_stage,
    record_attempt_finished,
    record_attempt_started,
    record_output,
    record_pending,
    record_progress,
    stage_key,
)
from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.intervals import IndexSet

KEY = stage_key("transform")
T0, T1, T2, T3 = (f"2024-05-01T00:0{i}:00Z" for i in range(4))
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([a-z0-9A-Z]([-a-zA-Z0-9._]*[a-zA-Z0-9])?)?$")


def start(data, *, job="kb-job-g1", uid="uid-1", spec="h1", index_map="0-9", try_number=1, at=T0, key=KEY):
    return record_attempt_started(
        data, key, try_number=try_number, job=job, uid=uid, spec_hash=spec, index_map=index_map, at=at
    )


def finish(data, *, job="kb-job-g1", uid="uid-1", ok=True, completed="0-9", failed="", at=T2, key=KEY, **kw):
    return record_attempt_finished(
        data, key, job=job, uid=uid, succeeded=ok, completed=completed, failed=failed, at=at, **kw
    )


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("dag_id", "run_id"),
    [
        ("etl", "manual__2024-05-01T00:00:00+00:00"),
        ("ETL", "manual__2024-05-01T00:00:00+00:00"),
        ("a" * 250, "scheduled__2024-05-02"),
        ("ünïcödé_dag", "backfill__2024-05-03"),
        ("___", "r"),
    ],
)
def test_ledger_name_and_labels(dag_id: str, run_id: str) -> None:
    name = ledger_name(dag_id, run_id)
    assert name == ledger_name(dag_id, run_id)
    assert name.startswith("kbatch-ledger-") and len(name) <= 63 and DNS_LABEL.match(name)
    assert name != ledger_name(dag_id, run_id + "x")
    labels = records.ledger_labels(dag_id, run_id)
    assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values())
    assert labels[names.LABEL_RUN_KEY] == names.run_key(run_id)  # same value the stage's Jobs carry
    assert labels["kbatch.io/ledger"] == "true"
    body = records.ledger_config_map(dag_id, run_id, "ns")
    assert body["metadata"]["annotations"][names.ANNOTATION_RUN_ID] == run_id
    assert body["metadata"]["namespace"] == "ns" and body["data"] == {}


def test_ledger_names_differ_by_case_of_dag_id() -> None:
    assert ledger_name("ETL", "r") != ledger_name("etl", "r")


def test_ledger_selector() -> None:
    assert records.ledger_selector() == "kbatch.io/ledger=true"
    sel = records.ledger_selector("etl", "r1")
    assert sel == f"kbatch.io/ledger=true,kbatch.io/dag-id=etl,kbatch.io/run-key={names.run_key('r1')}"


@pytest.mark.parametrize(
    ("task_id", "map_index", "key"),
    [
        ("transform", -1, "stage.transform"),
        ("transform", 3, "stage.transform.3"),
        ("group.task_1-x", -1, "stage.group.task_1-x"),
    ],
)
def test_stage_key(task_id: str, map_index: int, key: str) -> None:
    assert stage_key(task_id, map_index) == key


@pytest.mark.parametrize("task_id", ["tâche", "t" * 300, "a b"])
def test_stage_key_sanitises_and_hashes(task_id: str) -> None:
    key = stage_key(task_id, 12)
    assert re.match(r"^[-._a-zA-Z0-9]+$", key) and len(key) <= 253 and key.endswith(".12")
    assert key != stage_key(task_id + "x", 12)


# --------------------------------------------------------------------------- lifecycle


def test_full_lifecycle() -> None:
    data: dict[str, str] = {"other": "untouched"}
    data = record_pending(data, KEY, at=T0, task_id="transform", map_index=-1)
    data = start(data, at=T1)
    data = record_progress(
        data, KEY, job="kb-job-g1", uid="uid-1", completed="0-3", failed="7", results={0: {"rows": 5}}
    )
    data = finish(data, completed="0-6,8-9", failed="7", ok=False, at=T2, reason="FailedIndexes: 7")
    rec = read_stage(data, KEY)
    assert rec is not None
    assert data["other"] == "untouched"
    assert rec.state == "failed"
    assert [s for s, _ in rec.transitions] == ["pending", "running", "failed"]
    assert rec.completed == IndexSet.parse("0-6,8-9") and rec.failed == IndexSet.parse("7")
    assert rec.results == {0: {"rows": 5}}
    attempt = rec.latest_attempt
    assert attempt is not None
    assert (attempt.job, attempt.uid, attempt.try_number, attempt.spec_hash) == (
        "kb-job-g1",
        "uid-1",
        1,
        "h1",
    )
    assert (attempt.started, attempt.ended, attempt.reason) == (T1, T2, "FailedIndexes: 7")
    assert attempt.counts == {"index_map": 10, "completed": 9, "failed": 1}
    assert completed_for_resume(data, KEY, "h1") == IndexSet.parse("0-6,8-9")
    assert completed_for_resume(data, KEY, "h2") == IndexSet()
    assert completed_for_resume(data, "stage.unknown", "h1") == IndexSet()

    # The Airflow retry runs only index 7 (Job-local 0 -> logical 7) and succeeds.
    data = start(data, job="kb-job-g2", uid="uid-2", index_map="7", try_number=2, at=T3)
    data = finish(data, job="kb-job-g2", uid="uid-2", completed="7", at=T3)
    rec = read_stage(data, KEY)
    assert rec is not None and rec.state == "succeeded"
    assert [s for s, _ in rec.transitions] == ["pending", "running", "failed", "running", "succeeded"]
    assert rec.completed == IndexSet.full(10) and rec.failed == IndexSet()
    assert [a.try_number for a in rec.attempts] == [1, 2]
    assert completed_for_resume(data, KEY, "h1") == IndexSet.full(10)


OPS: list[tuple[str, Callable[[dict[str, str]], dict[str, str]]]] = [
    ("pending", lambda d: record_pending(d, KEY, at=T0)),
    ("started", lambda d: start(d, at=T1)),
    (
        "progress",
        lambda d: record_progress(
            d, KEY, job="kb-job-g1", completed="0-4", failed="9", results={1: {"x": 1}}
        ),
    ),
    ("finished", lambda d: finish(d, completed="0-8", failed="9", ok=False, reason="r")),
    (
        "output",
        lambda d: record_output(d, KEY, name="clean", manifest_digest="sha256:ab", bytes=3, records=1),
    ),
]


@pytest.mark.parametrize(("name", "op"), OPS, ids=[n for n, _ in OPS])
def test_every_update_is_idempotent_and_pure(name: str, op) -> None:
    data: dict[str, str] = {}
    for other_name, other in OPS:
        if other_name == name:
            break
        data = other(data)
    frozen = dict(data)
    once = op(data)
    assert data == frozen  # the input mapping is never mutated
    assert op(once) == once  # re-applying after a lost response changes nothing


def test_started_after_end_does_not_reopen() -> None:
    data = finish(start({}), ok=False, completed="", failed="0-9")
    again = start(data, at=T3)  # a stale duplicate of the start
    assert read_stage(again, KEY).state == "failed"  # type: ignore[union-attr]
    assert again == data


def test_adoption_updates_the_attempt() -> None:
    data = start({}, try_number=1)
    data = start(data, try_number=2, at=T2)  # Airflow retry adopts the running Job (same name and uid)
    rec = read_stage(data, KEY)
    assert rec is not None and len(rec.attempts) == 1 and rec.attempts[0].try_number == 2
    assert [s for s, _ in rec.transitions] == ["running"]


def test_uid_filled_in_later() -> None:
    data = start({}, uid=None)
    data = start(data, uid="uid-1")
    rec = read_stage(data, KEY)
    assert rec is not None and len(rec.attempts) == 1 and rec.attempts[0].uid == "uid-1"


def test_recreated_job_with_same_name_is_a_new_attempt() -> None:
    data = finish(start({}), ok=False, completed="0-4", failed="5-9")
    data = start(data, uid="uid-other", at=T3)
    assert len(read_stage(data, KEY).attempts) == 2  # type: ignore[union-attr]


def test_new_spec_hash_resets_resume() -> None:
    data = finish(start({}), ok=False, completed="0-4", failed="5-9")
    data = start(data, job="kb-job-g2", uid="uid-2", spec="h2", index_map="0-9", at=T3)
    rec = read_stage(data, KEY)
    assert rec is not None and rec.spec_hash == "h2"
    assert rec.completed == IndexSet() and rec.failed == IndexSet()
    assert completed_for_resume(data, KEY, "h1") == IndexSet()
    assert completed_for_resume(data, KEY, "h2") == IndexSet()
    # A late report from the old Job updates its attempt but not the stage (and not its state).
    data = record_progress(data, KEY, job="kb-job-g1", uid="uid-1", completed="0-6")
    data = finish(data, job="kb-job-g1", uid="uid-1", ok=False, completed="0-6", at=T3)
    rec = read_stage(data, KEY)
    assert rec is not None and rec.completed == IndexSet() and rec.state == "running"
    assert rec.attempts[0].completed == IndexSet.parse("0-6")


def test_progress_for_unknown_job() -> None:
    with pytest.raises(LedgerError, match="no attempt for Job 'kb-x'"):
        record_progress(start({}), KEY, job="kb-x", completed="1")


def test_key_collision_is_refused() -> None:
    data = record_pending({}, KEY, at=T0, task_id="transform", map_index=-1)
    with pytest.raises(LedgerError, match="two task instances map to the same key"):
        record_pending(data, KEY, at=T0, task_id="transform", map_index=2)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{", "not valid JSON"),
        ("[]", "expected a JSON object"),
        (
            '{"schema_version": 2, "state": "running"}',
            "schema_version 2 is newer than this provider understands",
        ),
        ('{"schema_version": 1, "state": "done"}', "state: expected one of"),
    ],
)
def test_malformed_records(text: str, fragment: str) -> None:
    with pytest.raises(LedgerError) as err:
        start({KEY: text})
    assert fragment in str(err.value)


def test_output_and_stage_output() -> None:
    data = start({})
    data = finish(
        data,
        output={
            "name": "clean",
            "manifest_digest": "sha256:ab",
            "bytes": 10,
            "records": 2,
            "contract": {"name": "events", "version": "1.0", "fields": {"id": "int"}},
        },
    )
    out = records.stage_output(data, KEY)
    assert out is not None and out.contract == {"name": "events", "version": "1.0"} and out.bytes == 10
    assert records.stage_output(start({}), KEY) is None
    with pytest.raises(LedgerError, match="manifest_digest"):
        record_output(data, KEY, name="clean", manifest_digest="abc")


def test_results_are_capped_to_the_lowest_indexes_whatever_the_order() -> None:
    items = [(i, {"i": i}) for i in range(250)]
    big = {"blob": "x" * 2000}
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    finals = []
    for order in (items, shuffled):
        data = start({})
        for chunk in range(0, 250, 50):
            data = record_progress(data, KEY, job="kb-job-g1", results=dict(order[chunk : chunk + 50]))
        data = record_progress(data, KEY, job="kb-job-g1", results={3: big})
        finals.append(read_stage(data, KEY))
    for rec in finals:
        assert rec is not None and sorted(rec.results) == list(range(records.MAX_RESULTS))
        assert rec.results_truncated is True
        assert rec.results[3] == {"_truncated": True, "bytes": len(json.dumps(big, separators=(",", ":")))}
    assert finals[0].results == finals[1].results  # type: ignore[union-attr]


def test_reason_is_truncated() -> None:
    data = finish(start({}), ok=False, reason="x" * 5000)
    assert len(read_stage(data, KEY).latest_attempt.reason) == records.MAX_REASON_CHARS  # type: ignore[union-attr]


def test_history_is_capped() -> None:
    data: dict[str, str] = {}
    for n in range(30):
        data = start(data, job=f"kb-job-g{n}", uid=f"u{n}", try_number=n + 1)
        data = finish(data, job=f"kb-job-g{n}", uid=f"u{n}", ok=False, completed="", failed="0-9")
    rec = json.loads(data[KEY])
    assert len(rec["attempts"]) == records.MAX_ATTEMPTS and rec["attempts_dropped"] == 10
    assert len(rec["transitions"]) == records.MAX_TRANSITIONS and rec["transitions_dropped"] == 60 - 32
    assert rec["attempts"][-1]["job"] == "kb-job-g29"


def test_record_schema_is_pinned() -> None:
    """The stored fields are exactly the documented ones: nothing else reaches the ConfigMap."""
    data = finish(
        start(record_pending({}, KEY, at=T0, task_id="transform", map_index=-1)), results={0: {"a": 1}}
    )
    raw = json.loads(data[KEY])
    assert sorted(raw) == sorted(
        [
            "schema_version",
            "task_id",
            "map_index",
            "state",
            "transitions",
            "transitions_dropped",
            "attempts",
            "attempts_dropped",
            "spec_hash",
            "completed",
            "failed",
            "output",
            "results",
            "results_truncated",
            "updated_at",
        ]
    )
    assert sorted(raw["attempts"][0]) == sorted(
        [
            "try_number",
            "job",
            "uid",
            "spec_hash",
            "index_map",
            "completed",
            "failed",
            "counts",
            "started",
            "ended",
            "reason",
            "results",
        ]
    )
    assert raw["attempts"][0]["results"] == 1  # indexes whose result was stored


# --------------------------------------------------------------------------- size at 100,000 indexes


def _scattered(n: int, density: float, seed: int) -> IndexSet:
    rng = random.Random(seed)
    return IndexSet.of(i for i in range(n) if rng.random() < density)


@pytest.mark.parametrize(
    ("label", "failed"),
    [
        ("1% random", _scattered(100_000, 0.01, 1)),
        ("50% random", _scattered(100_000, 0.5, 2)),
        ("every other", IndexSet.of(range(1, 100_000, 2))),
    ],
)
def test_100k_index_stage_with_scattered_failures_fits(label: str, failed: IndexSet) -> None:
    n = 100_000
    everything = IndexSet.full(n)
    key = stage_key("ingest")
    # attempt 1 runs everything; the scattered indexes fail
    data = start({}, index_map=str(everything), key=key)
    data = record_progress(
        data,
        key,
        job="kb-job-g1",
        uid="uid-1",
        completed=everything - failed,
        failed=failed,
        results={i: {"rows": i, "note": "ok"} for i in range(0, n, 7)},
    )
    data = finish(
        data, key=key, ok=False, completed=everything - failed, failed=failed, reason="FailedIndexes"
    )
    # attempt 2 resumes only the failed ones; half of them fail again
    still = IndexSet.of(list(failed)[::2])
    data = start(data, key=key, job="kb-job-g2", uid="uid-2", index_map=failed, try_number=2, at=T3)
    data = finish(
        data, key=key, job="kb-job-g2", uid="uid-2", ok=False, completed=failed - still, failed=still, at=T3
    )
    rec = read_stage(data, key)
    assert rec is not None
    assert completed_for_resume(data, key, "h1") == everything - still
    assert rec.failed == still
    assert rec.latest_attempt is not None and rec.latest_attempt.index_map == failed
    assert len(data[key]) <= records.RECORD_BUDGET_BYTES
    # A DAG run with a dozen such stages still fits in one ConfigMap.
    many = {stage_key(f"stage_{s}"): data[key] for s in range(12)}
    size = records.ledger_size(many)
    assert size < records.LEDGER_BUDGET_BYTES < records.MAX_OBJECT_BYTES, (label, size)
    records.check_size(many)


def test_check_size_and_shrink() -> None:
    data: dict[str, str] = {}
    failed = _scattered(100_000, 0.5, 3)
    for s in range(3):
        key = stage_key(f"s{s}")
        data = start(data, key=key, index_map="0-99999")
        data = finish(
            data,
            key=key,
            ok=False,
            completed=IndexSet.full(100_000) - failed,
            failed=failed,
            results={i: {"i": i} for i in range(100)},
        )
    size = records.ledger_size(data)
    with pytest.raises(LedgerTooLarge, match=r"largest records: stage.s"):
        records.check_size(data, budget=size - 1)
    small = records.shrink(data, budget=size - 20_000)
    assert records.ledger_size(small) <= size - 20_000
    for key in records.stage_keys(small):
        assert completed_for_resume(small, key, "h1") == IndexSet.full(100_000) - failed
        assert read_stage(small, key).latest_attempt.index_map == IndexSet.full(100_000)  # type: ignore[union-attr]
    with pytest.raises(LedgerTooLarge):
        records.shrink(data, budget=1000)


# --------------------------------------------------------------------------- many concurrent writers


class FakeConfigMap:
    """resourceVersion compare-and-swap, as the API server does it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.data: dict[str, str] = {}
        self.version = 0
        self.conflicts = 0

    def get(self) -> tuple[dict[str, str], int]:
        with self._lock:
            return dict(self.data), self.version

    def replace(self, data: Mapping[str, str], version: int) -> bool:
        with self._lock:
            if version != self.version:
                self.conflicts += 1
                return False
            self.data, self.version = dict(data), self.version + 1
            return True


def cas(store: FakeConfigMap, update: Callable[[dict[str, str]], dict[str, str]]) -> None:
    while True:
        data, version = store.get()
        if store.replace(update(data), version):
            return


def test_many_concurrent_writers_lose_nothing() -> None:
    store = FakeConfigMap()
    stages, chunks = 12, 10
    barrier = threading.Barrier(stages)

    def writer(s: int) -> None:
        key = stage_key(f"stage_{s}")
        job = f"kb-s{s}-g1"
        barrier.wait()
        cas(store, lambda d: record_pending(d, key, at=T0, task_id=f"stage_{s}", map_index=-1))
        cas(
            store,
            lambda d: record_attempt_started(
                d, key, try_number=1, job=job, uid=f"u{s}", spec_hash="h", index_map="0-999", at=T1
            ),
        )
        for c in range(chunks):
            done = IndexSet([(c * 100, c * 100 + 99)])
            cas(store, lambda d, done=done: record_progress(d, key, job=job, uid=f"u{s}", completed=done))
        cas(
            store,
            lambda d: record_attempt_finished(
                d, key, job=job, uid=f"u{s}", succeeded=True, completed="0-999", at=T2
            ),
        )

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(stages)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    data, version = store.get()
    assert version == stages * (3 + chunks)
    for s in range(stages):
        rec = read_stage(data, stage_key(f"stage_{s}"))
        assert rec is not None and rec.state == "succeeded"
        assert [st for st, _ in rec.transitions] == ["pending", "running", "succeeded"]
        assert rec.completed == IndexSet.full(1000) and len(rec.attempts) == 1


def test_reapplied_after_a_lost_response() -> None:
    """The write landed but the client saw a timeout: the CAS loop re-applies on the fresh copy."""
    store = FakeConfigMap()
    cas(store, lambda d: start(d))
    update = lambda d: record_progress(d, KEY, job="kb-job-g1", completed="0-4")  # noqa: E731
    cas(store, update)
    once, _ = store.get()
    cas(store, update)  # retried
    assert store.get()[0] == once


def test_same_version_record_with_extra_fields_still_reads() -> None:
    data = finish(start({}), output={"name": "clean", "manifest_digest": "sha256:ab"})
    raw = json.loads(data[KEY])
    raw["future_field"] = 1
    raw["output"]["future_field"] = 2
    rec = read_stage({KEY: json.dumps(raw)}, KEY)
    assert rec is not None and rec.output is not None and rec.output.name == "clean"


# --------------------------------------------------------------------------- the ledger's identity


def _ledger_cm(annotations: dict[str, str] | None, data: dict[str, str] | None = None) -> dict:
    metadata = {"name": ledger_name("etl", "r1"), "labels": records.ledger_labels("etl", "r1")}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "data": data or {}}


def test_the_ledger_configmap_carries_its_identity() -> None:
    body = records.ledger_config_map("etl", "r1", "ns")
    assert body["metadata"]["annotations"] == {
        "kbatch.io/dag-id": "etl",
        "kbatch.io/run-id": "r1",
        "kbatch.io/ledger-schema-version": str(records.SCHEMA_VERSION),
    }
    records.check_ledger(body, "etl", "r1")
    assert records.ledger_data(
        _ledger_cm(records.ledger_annotations("etl", "r1"), {"k": "v"}), "etl", "r1"
    ) == {"k": "v"}


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [
        ({"kbatch.io/dag-id": "etl", "kbatch.io/run-id": "r2"}, "belongs to DAG 'etl' run 'r2', not to DAG 'etl' run 'r1'"),
        ({"kbatch.io/dag-id": "ETL", "kbatch.io/run-id": "r1"}, "belongs to DAG 'ETL' run 'r1'"),
        ({"kbatch.io/run-id": "r1"}, "belongs to DAG None run 'r1'"),
        (
            {"kbatch.io/dag-id": "etl", "kbatch.io/run-id": "r1", "kbatch.io/ledger-schema-version": "2"},
            "is newer than this provider understands (1)",
        ),
    ],
)  # fmt: skip
def test_a_ledger_of_another_run_under_our_name_is_refused(
    annotations: dict[str, str], fragment: str
) -> None:
    """The name holds a 40-bit hash of dag id and run id: a collision must not mix two runs."""
    found = _ledger_cm(annotations, {"stage.x": "{}"})
    with pytest.raises(records.LedgerIdentityError, match=re.escape(fragment)) as err:
        records.ledger_data(found, "etl", "r1")
    assert err.value.final is True and isinstance(err.value, LedgerError)


def test_a_ledger_an_older_provider_created_without_annotations_is_accepted() -> None:
    records.check_ledger(_ledger_cm(None), "etl", "r1")
    records.check_ledger(None, "etl", "r1")  # not created yet
    assert records.ledger_data(None, "etl", "r1") == {}


def test_one_schema_version_for_stage_and_workspace_records() -> None:
    from airflow_provider_kbatch.pipeline import workspace as ws

    assert ws.SCHEMA_VERSION is records.SCHEMA_VERSION and ws.WORKSPACE_KEY == records.WORKSPACE_KEY
    assert ws.read_workspace is records.read_workspace and ws.record_workspace is records.record_workspace
    data = records.record_workspace(
        start({}), claim="c", generation=1, uid="u", provisioned=True, retention="retain", run_id="r1",
        logical_date=None, at=T1,
    )  # fmt: skip
    assert (
        json.loads(data[records.WORKSPACE_KEY])["schema_version"] == json.loads(data[KEY])["schema_version"]
    )
    newer = json.dumps({"schema_version": records.SCHEMA_VERSION + 1, "claim": "c"})
    with pytest.raises(LedgerError, match="'workspace' record: schema_version 2 is not understood"):
        records.read_workspace({records.WORKSPACE_KEY: newer})


# --------------------------------------------------------------------------- the ledger's size budget

BIG_RESULTS = {i: {"index": i, "blob": "x" * 440} for i in range(records.MAX_RESULTS)}  # ~500 B each


def _stage_run(data: dict[str, str], s: int, attempts: int = 1) -> dict[str, str]:
    """What one stage writes: pending, attempts (all but the last failing), large results."""
    key, at = stage_key(f"stage_{s:02d}"), f"2024-05-01T{s // 60:02d}:{s % 60:02d}:00Z"
    data = records.shrink(record_pending(data, key, at=at, task_id=f"stage_{s:02d}", map_index=-1))
    for a in range(attempts):
        job, uid = f"kb-s{s}-g{a + 1}", f"u{s}-{a}"
        data = records.shrink(
            start(data, key=key, job=job, uid=uid, index_map="0-99", try_number=a + 1, at=at)
        )
        ok = a == attempts - 1
        data = records.shrink(
            finish(data, key=key, job=job, uid=uid, ok=ok, completed="0-99" if ok else "0-49", failed="" if ok
                   else "50-99", at=at, results=BIG_RESULTS)
        )  # fmt: skip
    return data


def test_a_40_stage_run_with_large_results_stays_under_the_object_limit() -> None:
    """~15 records of a full per-record budget fill the ledger; 40 of them must still fit, every
    write succeed, and the newest records stay intact (the oldest history goes first)."""
    one = _stage_run({}, 0)
    assert len(one[stage_key("stage_00")]) > records.LEDGER_BUDGET_BYTES // 20  # a large record
    unbounded: dict[str, str] = {}
    data: dict[str, str] = {}
    for s in range(40):
        unbounded = {**unbounded, **_stage_run({}, s, attempts=1 + s % 3)}
        data = _stage_run(data, s, attempts=1 + s % 3)
        assert records.ledger_size(data) <= records.LEDGER_BUDGET_BYTES  # every write fits
    assert records.ledger_size(unbounded) > records.MAX_OBJECT_BYTES  # without the budget: a 422
    assert records.ledger_size(data) < records.MAX_OBJECT_BYTES
    keys = [stage_key(f"stage_{s:02d}") for s in range(40)]
    for s, key in enumerate(keys):  # what resume, hand-off and lineage need survives everywhere
        rec = read_stage(data, key)
        assert rec is not None and rec.state == "succeeded" and rec.completed == IndexSet.full(100)
        assert rec.latest_attempt is not None and rec.latest_attempt.job == f"kb-s{s}-g{1 + s % 3}"
        assert rec.latest_attempt.index_map == IndexSet.full(100) and rec.latest_attempt.results == 100
        assert completed_for_resume(data, key, "h1") == IndexSet.full(100)
    intact = [s for s, key in enumerate(keys) if data[key] == unbounded[key]]
    assert intact == list(range(intact[0], 40)) and len(intact) >= 10, intact  # the newest, untouched
    assert read_stage(data, keys[0]).results == {}  # type: ignore[union-attr]  # the oldest: compacted


def test_shrink_takes_the_oldest_history_first() -> None:
    data: dict[str, str] = {}
    for s in range(3):
        data = _stage_run(data, s, attempts=3)
    full = dict(data)
    old, mid, new = (stage_key(f"stage_{s:02d}") for s in range(3))
    size = records.ledger_size(full)
    # 1. the oldest record's earlier attempts' index sets (counts stay); nothing else
    one = records.shrink(full, size - 1)
    raw = json.loads(one[old])
    assert [a["completed"] for a in raw["attempts"][:-1]] == [None, None]
    assert raw["attempts"][0]["counts"]["completed"] == 50 and len(raw["attempts"]) == 3
    assert (one[mid], one[new]) == (full[mid], full[new])
    # 2. its earlier attempts and transitions; 3. its results preview -- before the next record
    two = records.shrink(full, size - len(json.dumps(BIG_RESULTS)) // 2)
    rec = read_stage(two, old)
    assert rec is not None and len(rec.attempts) == 1 and rec.attempts_dropped == 2
    assert len(rec.transitions) == 1 and rec.state == "succeeded"
    assert rec.results == {} and rec.results_truncated and rec.latest_attempt.completed is not None  # type: ignore[union-attr]
    assert (two[mid], two[new]) == (full[mid], full[new])
    # then the next record, the newest last; 4. the latest attempt's sets, never the stage's
    tiny = records.shrink(full, 3 * 1000)
    for key in (old, mid, new):
        rec = read_stage(tiny, key)
        assert rec is not None and rec.completed == IndexSet.full(100) and rec.results == {}
        assert rec.latest_attempt.index_map == IndexSet.full(100)  # type: ignore[union-attr]
        assert completed_for_resume(tiny, key, "h1") == IndexSet.full(100)
    assert read_stage(tiny, old).latest_attempt.completed is None  # type: ignore[union-attr]
    assert records.shrink(full) == full  # within budget: unchanged
    with pytest.raises(LedgerTooLarge, match="largest records"):
        records.shrink(full, 1000)
