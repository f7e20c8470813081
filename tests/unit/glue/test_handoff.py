"""handoff.check_inputs: the precheck before a consumer's Job is submitted, from ledger data (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.pipeline.handoff import InputCheckError, check_inputs, producers_by_output

RUN = "manual__2026-01-01T00:00:00+00:00"
CLAIM = ws.claim_name("etl", RUN, 1)
ORDERS_V1 = Contract("orders", "1.0", {"order_id": "int", "amount": "int", "note": "str?"})
ACCEPT_V1 = Contract("orders", "1.3", {"order_id": "int", "amount": "int"})


def stage(
    data: dict[str, str],
    task: str,
    *,
    state: str = "succeeded",
    output: str | None = None,
    digest: str = "sha256:aa",
    contract: Contract | None = ORDERS_V1,
) -> dict[str, str]:
    key = rules.stage_key(task)
    data = rules.record_attempt_started(
        data,
        key,
        try_number=1,
        job=f"job-{task}",
        uid="j1",
        spec_hash="h",
        index_map="0-1",
        at="t0",
        task_id=task,
    )
    if state == "running":
        return data
    out = None
    if output is not None:
        out = {
            "name": output,
            "manifest_digest": digest,
            "bytes": 10,
            "records": 2,
            "contract": {"name": contract.name, "version": contract.version} if contract else None,
        }
    return rules.record_attempt_finished(
        data,
        key,
        job=f"job-{task}",
        uid="j1",
        succeeded=state == "succeeded",
        at="t1",
        completed="0-1",
        output=out,
    )


def with_workspace(data: dict[str, str], *bound: tuple[str, str, str], uid: str = "u1") -> dict[str, str]:
    data = ws.record_workspace(
        data,
        claim=CLAIM,
        generation=1,
        uid=uid,
        provisioned=True,
        retention="delete_on_success",
        run_id=RUN,
        logical_date=None,
        at="t0",
    )
    for output, task, digest in bound:
        data = ws.record_output_location(data, output=output, stage=task, manifest_digest=digest, at="t2")
    return data


def ledger(**kw: Any) -> dict[str, str]:
    data = stage({}, "ingest", output="raw", **kw)
    return with_workspace(data, ("raw", "ingest", kw.get("digest", "sha256:aa")))


def check(data: dict[str, str], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "stage": "transform",
        "run_id": RUN,
        "inputs": {"raw": None},
        "accepts": {"raw": ACCEPT_V1},
        "declared": {"ingest": ORDERS_V1},
        "workspace": ws.read_workspace(data),
    }
    return check_inputs(data, **{**args, **kw})


def problems(data: dict[str, str], **kw: Any) -> list[str]:
    with pytest.raises(InputCheckError) as err:
        check(data, **kw)
    assert str(err.value).startswith("stage 'transform': ")
    return list(err.value.problems)


def test_a_produced_compatible_input_resolves() -> None:
    resolved = check(ledger())
    assert resolved["raw"].stage == "ingest" and resolved["raw"].manifest_digest == "sha256:aa"
    assert resolved["raw"].contract == {"name": "orders", "version": "1.0"}
    # named producer, no accepted contract: the same
    assert check(ledger(), inputs={"raw": "ingest"}, accepts={})["raw"].records == 2


@pytest.mark.parametrize(
    ("build", "kw", "fragment"),
    [
        (lambda: {}, {}, "expected one stage of run"),
        (lambda: {}, {"inputs": {"raw": "ingest"}}, "stage 'ingest' has no record in run"),
        (lambda: stage({}, "ingest", state="running"), {"inputs": {"raw": "ingest"}}, "is running"),
        (
            lambda: stage({}, "ingest", state="failed", output="raw"),
            {"inputs": {"raw": "ingest"}},
            "is failed",
        ),
        (lambda: stage({}, "ingest"), {"inputs": {"raw": "ingest"}}, "recorded no output"),
        (
            lambda: stage({}, "ingest", output="other"),
            {"inputs": {"raw": "ingest"}},
            "recorded output 'other'",
        ),
        (lambda: stage(stage({}, "a", output="raw"), "b", output="raw"), {}, "stages 'a', 'b' both did"),
    ],
)
def test_missing_inputs_name_the_input_and_the_stage(build: Any, kw: dict[str, Any], fragment: str) -> None:
    (problem,) = problems(build(), **kw)
    assert "raw" in problem and fragment in problem


@pytest.mark.parametrize(
    ("accepted", "declared", "fragment"),
    [
        (Contract("orders", "2.0", {}), ORDERS_V1, "version: expected major 2 (2.0), found 1.0"),
        (Contract("invoices", "1.0", {}), ORDERS_V1, "contract name: expected 'invoices', found 'orders'"),
        (
            Contract("orders", "1.0", {"amount": "float"}),
            ORDERS_V1,
            "field 'amount': expected float, found int (contract orders 1.0)",
        ),
        (Contract("orders", "1.0", {"note": "str"}), ORDERS_V1, "field 'note': expected str, found str?"),
        (Contract("orders", "1.0", {"sku": "str"}), ORDERS_V1, "field 'sku': expected str, found missing"),
    ],
)
def test_incompatible_contracts_fail_naming_stage_field_expected_found(
    accepted: Contract, declared: Contract, fragment: str
) -> None:
    (problem,) = problems(ledger(), accepts={"raw": accepted}, declared={"ingest": declared})
    assert problem.startswith("input 'raw' (output of stage 'ingest'): ")
    assert fragment in problem


def test_fields_are_checked_only_against_the_declared_contract_of_the_recorded_version() -> None:
    # the producing task now declares 1.1, the recorded output is 1.0: only name and major count
    newer = Contract("orders", "1.1", {"order_id": "str"})
    assert check(ledger(), declared={"ingest": newer})["raw"].stage == "ingest"
    # no contract recorded at all, but one accepted
    (problem,) = problems(ledger(contract=None))
    assert "found no contract on the recorded output" in problem


@pytest.mark.parametrize(
    ("data_fn", "fragment"),
    [
        (lambda: stage({}, "ingest", output="raw"), "no workspace record"),
        (lambda: with_workspace(stage({}, "ingest", output="raw")), "not bound to the workspace"),
        (
            lambda: with_workspace(
                stage({}, "ingest", output="raw", digest="sha256:bb"), ("raw", "ingest", "sha256:aa")
            ),
            "not bound to the workspace",
        ),
        (
            lambda: ws.record_workspace_deleted(ledger(), claim=CLAIM, at="t9"),
            f"claim {CLAIM!r} was deleted at t9",
        ),
        (
            lambda: ws.record_workspace(
                ledger(),
                claim=ws.claim_name("etl", RUN, 2),
                generation=2,
                uid="u2",
                provisioned=True,
                retention="delete_on_success",
                run_id=RUN,
                logical_date=None,
                at="t9",
            ),
            f"written to claim {CLAIM!r} (uid u1), which no longer exists",
        ),
    ],
)
def test_inputs_on_storage_that_is_gone_fail_fast(data_fn: Any, fragment: str) -> None:
    (problem,) = problems(data_fn())
    assert fragment in problem and "clear stage 'ingest'" in problem


def test_every_problem_is_reported_at_once() -> None:
    data = stage(ledger(), "side", output="dims")
    data = with_workspace(data, ("raw", "ingest", "sha256:aa"))  # dims is not bound
    found = problems(
        data,
        inputs={"raw": None, "dims": None, "gone": None},
        accepts={"raw": Contract("orders", "2.0", {})},
    )
    assert len(found) == 3
    assert "'raw'" in found[0] and "'dims'" in found[1] and "'gone'" in found[2]


def test_location_check_can_be_skipped_and_nothing_is_written() -> None:
    data = stage({}, "ingest", output="raw")
    before = dict(data)
    assert check(data, check_location=False)["raw"].stage == "ingest"
    assert data == before
    assert producers_by_output(data) == {"raw": ["ingest"]}
