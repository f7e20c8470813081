"""Data contracts for DAG authors and the operator (pure; the checks live in ``runtime.schema``).

A stage declares the contract it produces and the one it accepts for each input::

    EVENTS_V1 = Contract("events", "1.2", {"id": "int", "user": "str", "score": "float?"})

    KbatchJobOperator(task_id="transform", inputs=["raw"], accepts={"raw": EVENTS_V1}, ...)

``incompatibilities(produced, accepted)`` is empty when both have the same name and major version and
``produced`` has every
field ``accepted`` requires with the same base type (a nullable produced field only satisfies a
nullable accepted one). The same rules run inside the pod (``runtime.verify_input``) through the
one implementation in :mod:`airflow_provider_kbatch.runtime.schema`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from airflow_provider_kbatch.runtime import env as runtime_env
from airflow_provider_kbatch.runtime import schema


@dataclass(frozen=True)
class Contract:
    """``name``, ``version`` (``"MAJOR.MINOR"``) and ``fields`` (``{field: type}``, types ``str``,
    ``int``, ``float``, ``bool``, each optionally nullable with ``?``). Immutable and hashable."""

    name: str
    version: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checked = schema.validate_contract(
            {"name": self.name, "version": self.version, "fields": self.fields}
        )
        object.__setattr__(self, "fields", MappingProxyType(dict(sorted(checked["fields"].items()))))

    def __hash__(self) -> int:
        return hash((self.name, self.version, tuple(self.fields.items())))

    @property
    def major(self) -> int:
        return schema.parse_version(self.version)[0]

    @property
    def minor(self) -> int:
        return schema.parse_version(self.version)[1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in manifests and in ``KBATCH_*_CONTRACT`` variables."""
        return {"name": self.name, "version": self.version, "fields": dict(self.fields)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contract:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming what is malformed."""
        checked = schema.validate_contract(data)
        return cls(checked["name"], checked["version"], checked["fields"])

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def as_contract(value: Contract | Mapping[str, Any]) -> Contract:
    """Accept a :class:`Contract` or its dict form."""
    return value if isinstance(value, Contract) else Contract.from_dict(value)


def incompatibilities(
    produced: Contract | Mapping[str, Any] | None,
    accepted: Contract | Mapping[str, Any],
    *,
    stage: str | None = None,
) -> list[str]:
    """Why ``produced`` data cannot be read under ``accepted`` ([] when compatible).

    Each message names the stage (when given), the field, what was expected and what was found.
    """
    prod = None if produced is None else as_contract(produced).to_dict()
    return schema.contract_errors(prod, as_contract(accepted).to_dict(), stage=stage)


def contract_env(
    produces: Contract | Mapping[str, Any] | None = None,
    accepts: Mapping[str, Contract | Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """The environment variables that hand the contracts to the pod's runtime helper.

    ``KBATCH_OUTPUT_CONTRACT`` for ``produces`` and ``KBATCH_INPUT_<NAME>_CONTRACT`` for each
    accepted input (named with the runtime's own mangling, so both sides agree).
    """
    env: dict[str, str] = {}
    if produces is not None:
        env[runtime_env.OUTPUT_CONTRACT] = as_contract(produces).to_json()
    for name, contract in (accepts or {}).items():
        env[runtime_env.input_contract_env_name(name)] = as_contract(contract).to_json()
    return env
