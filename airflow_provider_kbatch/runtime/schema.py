"""Data contracts as plain dicts, and the record-level schema check (stdlib only).

This module is the single implementation of the checks: the runtime uses it inside pods (the
producer validates before publishing, the consumer before reading), and
``airflow_provider_kbatch.pipeline.contracts`` wraps it for the operator.

A contract is ``{"name": str, "version": "MAJOR.MINOR", "fields": {field: type}}``. A type is one
of ``str``, ``int``, ``float``, ``bool``, optionally suffixed with ``?`` (nullable: the value may
be ``null``). Every field of a schema is required in every record; extra fields are allowed.
``int`` excludes booleans; ``float`` accepts integers (JSON writers often print ``1.0`` as ``1``).

Compatibility (``contract_errors``): same name, same major version, and the producer provides
every field the consumer accepts, with the same base type; a nullable producer field only
satisfies a nullable consumer field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_kbatch.runtime.errors import ContractViolation

BASE_TYPES = ("str", "int", "float", "bool")
_VERSION = re.compile(r"^(\d+)\.(\d+)$")


def parse_type(type_name: str) -> tuple[str, bool]:
    """``"int?"`` -> ``("int", True)``; ``ValueError`` for an unknown type."""
    if not isinstance(type_name, str):
        raise ValueError(f"type {type_name!r}: expected a string such as 'int' or 'str?'")
    base, nullable = (type_name[:-1], True) if type_name.endswith("?") else (type_name, False)
    if base not in BASE_TYPES:
        raise ValueError(
            f"type {type_name!r}: expected one of {', '.join(BASE_TYPES)} (optionally with '?' for nullable)"
        )
    return base, nullable


def parse_version(version: str) -> tuple[int, int]:
    """``"1.2"`` -> ``(1, 2)``; ``ValueError`` unless ``MAJOR.MINOR``."""
    match = _VERSION.match(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"version {version!r}: expected 'MAJOR.MINOR', e.g. '1.0'")
    return int(match.group(1)), int(match.group(2))


def validate_schema(schema: Mapping[str, str]) -> dict[str, str]:
    """Check a ``{field: type}`` schema; returns it as a plain dict. ``ValueError`` naming the field."""
    if not isinstance(schema, Mapping):
        raise ValueError(f"schema: expected a mapping of field -> type, got {type(schema).__name__}")
    out: dict[str, str] = {}
    for field, type_name in schema.items():
        if not isinstance(field, str) or not field:
            raise ValueError(f"schema: field name {field!r} must be a non-empty string")
        try:
            parse_type(type_name)
        except ValueError as exc:
            raise ValueError(f"schema field {field!r}: {exc}") from None
        out[field] = type_name
    return out


def validate_contract(contract: Mapping[str, Any]) -> dict[str, Any]:
    """Check a contract dict; returns ``{"name", "version", "fields"}`` (fields default to ``{}``)."""
    if not isinstance(contract, Mapping):
        raise ValueError(f"contract: expected a mapping, got {type(contract).__name__}")
    name = contract.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"contract: 'name' must be a non-empty string, got {name!r}")
    version = contract.get("version")
    try:
        parse_version(version)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"contract {name!r}: {exc}") from None
    try:
        fields = validate_schema(contract.get("fields") or {})
    except ValueError as exc:
        raise ValueError(f"contract {name!r}: {exc}") from None
    return {"name": name, "version": version, "fields": fields}


def type_of(value: Any) -> str:
    """The JSON type name of a value, for messages: null, bool, int, float, str, list, object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def value_matches(value: Any, type_name: str) -> bool:
    """Does ``value`` satisfy ``type_name``?"""
    base, nullable = parse_type(type_name)
    if value is None:
        return nullable
    found = type_of(value)
    return found == base or (base == "float" and found == "int")


def record_errors(record: Any, schema: Mapping[str, str], *, where: str = "record") -> list[str]:
    """Every violation of ``schema`` by one record: ``"<where>: field 'x': expected int, found str"``."""
    if not isinstance(record, Mapping):
        return [f"{where}: expected an object, found {type_of(record)}"]
    errors = []
    for field, type_name in schema.items():
        if field not in record:
            errors.append(f"{where}: field {field!r}: expected {type_name}, found missing")
        elif not value_matches(record[field], type_name):
            errors.append(
                f"{where}: field {field!r}: expected {type_name}, found {type_of(record[field])} "
                f"({_short(record[field])})"
            )
    return errors


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_records(
    records: Iterable[Any],
    schema: Mapping[str, str],
    *,
    stage: str | None = None,
    max_errors: int = 10,
) -> int:
    """Check every record against ``schema`` before publishing; returns how many were checked.

    Raises :class:`ContractViolation` listing up to ``max_errors`` problems (record number,
    field, expected and found type), prefixed by the stage when given.
    """
    checked_schema = validate_schema(schema)
    prefix = f"stage {stage!r}: " if stage else ""
    shown: list[str] = []
    bad = 0
    checked = 0
    for checked, record in enumerate(records, start=1):
        errors = record_errors(record, checked_schema, where=f"{prefix}record {checked - 1}")
        if errors:
            bad += 1
            shown.extend(errors[: max(0, max_errors - len(shown))])
    if bad:
        hidden = f"\n({bad} bad record(s) out of {checked})"
        raise ContractViolation("\n".join(shown) + hidden)
    return checked


def contract_errors(
    produced: Mapping[str, Any] | None,
    accepted: Mapping[str, Any],
    *,
    stage: str | None = None,
) -> list[str]:
    """Why data under ``produced`` cannot be read by a consumer accepting ``accepted`` ([] = compatible).

    Both are contract dicts. Each message names the stage (when given), the field, what the
    consumer expects and what the producer declared.
    """
    prefix = f"stage {stage!r}: " if stage else ""
    acc = validate_contract(accepted)
    want = f"{acc['name']} {acc['version']}"
    if produced is None:
        return [f"{prefix}contract: expected {want}, found no contract on the input"]
    try:
        prod = validate_contract(produced)
    except ValueError as exc:
        return [f"{prefix}contract: expected {want}, found a malformed contract ({exc})"]
    if prod["name"] != acc["name"]:
        return [f"{prefix}contract name: expected {acc['name']!r}, found {prod['name']!r}"]
    if parse_version(prod["version"])[0] != parse_version(acc["version"])[0]:
        return [
            f"{prefix}contract {acc['name']!r} version: expected major {parse_version(acc['version'])[0]} "
            f"({acc['version']}), found {prod['version']}"
        ]
    errors = []
    for field, want_type in acc["fields"].items():
        have_type = prod["fields"].get(field)
        if have_type is None:
            errors.append(f"{prefix}field {field!r}: expected {want_type}, found missing (contract {want})")
            continue
        (want_base, want_null), (have_base, have_null) = parse_type(want_type), parse_type(have_type)
        if want_base != have_base or (have_null and not want_null):
            errors.append(
                f"{prefix}field {field!r}: expected {want_type}, found {have_type} (contract {want})"
            )
    return errors
