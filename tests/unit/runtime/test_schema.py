from __future__ import annotations

import pytest

from airflow_provider_kbatch.runtime import schema
from airflow_provider_kbatch.runtime.errors import ContractViolation


@pytest.mark.parametrize(
    ("type_name", "parsed"),
    [
        ("str", ("str", False)),
        ("int?", ("int", True)),
        ("float", ("float", False)),
        ("bool?", ("bool", True)),
    ],
)
def test_parse_type(type_name: str, parsed) -> None:
    assert schema.parse_type(type_name) == parsed


@pytest.mark.parametrize("type_name", ["list", "int??", "?", "", "Int", 3])
def test_parse_type_rejects(type_name) -> None:
    with pytest.raises(ValueError, match=r"expected one of|expected a string"):
        schema.parse_type(type_name)


@pytest.mark.parametrize(("version", "parsed"), [("1.0", (1, 0)), ("12.34", (12, 34))])
def test_parse_version(version: str, parsed) -> None:
    assert schema.parse_version(version) == parsed


@pytest.mark.parametrize("version", ["1", "1.0.0", "v1.0", "", None, 1.0])
def test_parse_version_rejects(version) -> None:
    with pytest.raises(ValueError, match=r"MAJOR.MINOR"):
        schema.parse_version(version)


@pytest.mark.parametrize(
    ("value", "type_name", "ok"),
    [
        (1, "int", True),
        (True, "int", False),
        (1.5, "int", False),
        (1, "float", True),
        (1.5, "float", True),
        (True, "float", False),
        ("a", "str", True),
        (1, "str", False),
        (False, "bool", True),
        (0, "bool", False),
        (None, "int", False),
        (None, "int?", True),
        (3, "int?", True),
        ([1], "str", False),
    ],
)
def test_value_matches(value, type_name: str, ok: bool) -> None:
    assert schema.value_matches(value, type_name) is ok


SCHEMA = {"id": "int", "name": "str", "score": "float?"}


@pytest.mark.parametrize(
    ("record", "errors"),
    [
        ({"id": 1, "name": "a", "score": None}, []),
        ({"id": 1, "name": "a", "score": 2, "extra": [1]}, []),
        ({"id": "1", "name": "a", "score": 1.0}, ["r: field 'id': expected int, found str ('1')"]),
        ({"name": "a", "score": 1.0}, ["r: field 'id': expected int, found missing"]),
        ({"id": 1, "name": None, "score": 1.0}, ["r: field 'name': expected str, found null (None)"]),
        ([1, 2], ["r: expected an object, found list"]),
    ],
)
def test_record_errors(record, errors: list[str]) -> None:
    assert schema.record_errors(record, SCHEMA, where="r") == errors


def test_validate_records_counts_and_reports() -> None:
    assert schema.validate_records(iter([{"id": 1, "name": "a", "score": None}] * 3), SCHEMA) == 3
    assert schema.validate_records([], SCHEMA) == 0
    bad = [{"id": 1, "name": "a", "score": 1.0}, {"id": "x", "name": "a", "score": 1.0}] + [{"id": 1}] * 20
    with pytest.raises(ContractViolation) as err:
        schema.validate_records(bad, SCHEMA, stage="ingest", max_errors=3)
    message = str(err.value)
    assert message.splitlines()[0] == "stage 'ingest': record 1: field 'id': expected int, found str ('x')"
    assert len(message.splitlines()) == 4
    assert message.endswith("(21 bad record(s) out of 22)")


def test_validate_records_rejects_bad_schema() -> None:
    with pytest.raises(ValueError, match="schema field 'a'"):
        schema.validate_records([], {"a": "date"})


def _c(name: str = "events", version: str = "1.0", **fields: str) -> dict:
    return {"name": name, "version": version, "fields": fields}


@pytest.mark.parametrize(
    ("produced", "accepted", "errors"),
    [
        (_c(id="int", label="str"), _c(id="int"), []),
        (_c(version="1.7", id="int"), _c(version="1.2", id="int"), []),
        (_c(id="int"), _c(id="int?"), []),  # a non-null producer satisfies a nullable consumer
        (_c(), _c(), []),
        (None, _c(), ["stage 't': contract: expected events 1.0, found no contract on the input"]),
        (_c(name="users"), _c(), ["stage 't': contract name: expected 'events', found 'users'"]),
        (
            _c(version="2.0"),
            _c(version="1.3"),
            ["stage 't': contract 'events' version: expected major 1 (1.3), found 2.0"],
        ),
        (
            _c(id="str"),
            _c(id="int"),
            ["stage 't': field 'id': expected int, found str (contract events 1.0)"],
        ),
        (
            _c(id="int?"),
            _c(id="int"),
            ["stage 't': field 'id': expected int, found int? (contract events 1.0)"],
        ),
        (_c(), _c(id="int"), ["stage 't': field 'id': expected int, found missing (contract events 1.0)"]),
        (
            {"name": "events"},
            _c(),
            [
                "stage 't': contract: expected events 1.0, found a malformed contract (contract 'events': version None: expected 'MAJOR.MINOR', e.g. '1.0')"
            ],
        ),
    ],
)
def test_contract_errors(produced, accepted, errors: list[str]) -> None:
    assert schema.contract_errors(produced, accepted, stage="t") == errors


@pytest.mark.parametrize(
    ("contract", "fragment"),
    [
        ([], "expected a mapping"),
        ({"version": "1.0"}, "'name' must be a non-empty string"),
        ({"name": "e", "version": "1.0", "fields": {"": "int"}}, "field name ''"),
        ({"name": "e", "version": "1.0", "fields": {"a": "decimal"}}, "contract 'e': schema field 'a'"),
    ],
)
def test_validate_contract(contract, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        schema.validate_contract(contract)
    assert fragment in str(err.value)
