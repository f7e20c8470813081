"""engine.memo against an in-memory hook: a succeeded stage's entry is stored, found in another
run, re-validated against the producing run's ledger and the claim, and recorded as a hit."""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_kbatch.engine import memo
from airflow_provider_kbatch.pipeline import memo as rules
from airflow_provider_kbatch.pipeline import records
from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.spec.names import JobIdentity

AT = "2026-01-01T00:00:00.000000Z"
DIGEST = "sha256:" + "a" * 64
log = logging.getLogger(__name__)


class MemoryHook:
    def __init__(self) -> None:
        self.maps: dict[str, dict[str, Any]] = {}
        self.pvcs = {"shared": {"metadata": {"name": "shared", "uid": "claim-uid"}}}

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.maps.get(name)

    def update_config_map_cas(self, namespace: str, name: str, mutate: Any, **_: Any) -> dict[str, str]:
        current = self.maps.setdefault(name, {"metadata": {"name": name}, "data": {}})
        current["data"] = mutate(dict(current["data"]))
        return current["data"]

    def get_pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pvcs.get(name)


def _succeeded_run(hook: MemoryHook, run_id: str) -> JobIdentity:
    identity = JobIdentity(dag_id="etl", task_id="load", run_id=run_id)
    key = records.stage_key("load")
    data = records.record_attempt_started(
        {}, key, try_number=1, job="j", uid="u", spec_hash="h", index_map="0", at=AT, task_id="load"
    )
    data = records.record_attempt_finished(
        data, key, job="j", uid="u", succeeded=True, at=AT, completed="0",
        output={"name": "rows", "manifest_digest": DIGEST, "bytes": 3, "records": 1},
    )  # fmt: skip
    data = ws.record_workspace(
        data, claim="shared", generation=0, uid="claim-uid", provisioned=False, retention=None,
        run_id=run_id, logical_date=None, at=AT,
    )  # fmt: skip
    data = ws.record_output_location(data, output="rows", stage="load", manifest_digest=DIGEST, at=AT)
    hook.maps[records.ledger_name("etl", run_id)] = {"metadata": {}, "data": data}
    return identity


def test_store_lookup_and_hit() -> None:
    hook = MemoryHook()
    first = _succeeded_run(hook, "r1")
    entry = memo.store(hook, "ns", first, "k", completions=1, spec_hash="h", output_name="rows")
    assert entry is not None and entry.subpath == ws.output_subpath("r1", "rows")
    assert memo.lookup(hook, "ns", first, "k", log) is None, "never the run's own entry"
    second = JobIdentity(dag_id="etl", task_id="load", run_id="r2")
    hook.maps[records.ledger_name("etl", "r2")] = {
        "metadata": {},
        "data": ws.record_workspace(
            {},
            claim="shared",
            generation=0,
            uid="claim-uid",
            provisioned=False,
            retention=None,
            run_id="r2",
            logical_date=None,
            at=AT,
        ),
    }
    assert memo.lookup(hook, "ns", second, "other", log) is None
    found = memo.lookup(hook, "ns", second, "k", log)
    assert found == entry
    recorded = memo.record_hit(hook, "ns", second, found, spec_hash="h2", log=log)
    assert recorded is not None and recorded.manifest_digest == DIGEST
    data = hook.maps[records.ledger_name("etl", "r2")]["data"]
    location = ws.read_workspace(data).outputs["rows"]
    assert location.subpath == ws.output_subpath("r1", "rows")
    assert rules.cache_hit_of(data, records.stage_key("load"))["source_run_id"] == "r1"
    index = hook.maps[rules.index_name("etl", "load")]["data"]
    assert rules.read_entries(index)[0].hits == 1
    # a hit is not stored again; a recreated claim makes the entry stale and drops it
    assert memo.store(hook, "ns", second, "k", completions=1, spec_hash="h", output_name="rows") is None
    hook.pvcs["shared"]["metadata"]["uid"] = "new-uid"
    third = JobIdentity(dag_id="etl", task_id="load", run_id="r3")
    assert memo.lookup(hook, "ns", third, "k", log) is None
    assert rules.read_entries(hook.maps[rules.index_name("etl", "load")]["data"]) == []
