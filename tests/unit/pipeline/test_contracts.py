from __future__ import annotations

import json

import pytest

from airflow_provider_kbatch.pipeline.contracts import (
    Contract,
    contract_env,
    incompatibilities,
)

EVENTS = Contract("events", "1.2", {"id": "int", "user": "str", "score": "float?"})


def test_contract_is_frozen_hashable_and_normalised() -> None:
    same = Contract("events", "1.2", {"score": "float?", "user": "str", "id": "int"})
    assert same == EVENTS and hash(same) == hash(EVENTS)
    assert list(EVENTS.fields) == ["id", "score", "user"]
    assert (EVENTS.major, EVENTS.minor) == (1, 2)
    assert str(EVENTS) == "events 1.2"
    with pytest.raises(AttributeError):
        EVENTS.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        EVENTS.fields["id"] = "str"  # type: ignore[index]


def test_dict_roundtrip() -> None:
    assert Contract.from_dict(EVENTS.to_dict()) == EVENTS
    assert json.loads(EVENTS.to_json()) == EVENTS.to_dict()
    assert Contract.from_dict({"name": "x", "version": "0.1"}).fields == {}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("", "1.0", {}), "'name' must be a non-empty string"),
        (("e", "1", {}), "expected 'MAJOR.MINOR'"),
        (("e", "1.0", {"a": "date"}), "schema field 'a'"),
        (("e", "1.0", {"a": "int??"}), "schema field 'a'"),
    ],
)
def test_invalid_contracts(args, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        Contract(*args)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("produced", "accepted", "ok"),
    [
        (EVENTS, Contract("events", "1.0", {"id": "int"}), True),
        (EVENTS, Contract("events", "1.9", {"id": "int", "score": "float?"}), True),  # minor is not compared
        (EVENTS, Contract("events", "2.0", {"id": "int"}), False),
        (EVENTS, Contract("clicks", "1.0", {}), False),
        (EVENTS, Contract("events", "1.0", {"id": "str"}), False),
        (EVENTS, Contract("events", "1.0", {"score": "float"}), False),  # nullable cannot feed non-null
        (EVENTS, Contract("events", "1.0", {"user": "str?"}), True),
        (EVENTS, Contract("events", "1.0", {"ts": "int"}), False),
        (None, Contract("events", "1.0", {}), False),
        (EVENTS.to_dict(), {"name": "events", "version": "1.0", "fields": {"id": "int"}}, True),
    ],
)
def test_compatible(produced, accepted, ok: bool) -> None:
    assert (not incompatibilities(produced, accepted)) is ok
    assert (incompatibilities(produced, accepted) == []) is ok


def test_incompatibilities_name_stage_field_expected_found() -> None:
    errors = incompatibilities(
        EVENTS, Contract("events", "1.0", {"id": "str", "ts": "int"}), stage="transform"
    )
    assert errors == [
        "stage 'transform': field 'id': expected str, found int (contract events 1.0)",
        "stage 'transform': field 'ts': expected int, found missing (contract events 1.0)",
    ]


def test_contract_env_matches_runtime_names() -> None:
    from airflow_provider_kbatch.runtime import env as runtime_env

    env = contract_env(EVENTS, {"raw-events": EVENTS})
    assert set(env) == {"KBATCH_OUTPUT_CONTRACT", "KBATCH_INPUT_RAW_EVENTS_CONTRACT"}
    assert runtime_env.output_contract(env) == EVENTS.to_dict()
    assert runtime_env.accepted_contract("raw-events", env) == EVENTS.to_dict()
    assert contract_env() == {}
