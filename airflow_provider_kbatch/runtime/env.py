"""What a stage's container learns from its environment (set by ``KbatchJobOperator``).

Every reader takes an optional ``env`` mapping (default ``os.environ``) so it can be tested and
used by programs that build their own environment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.runtime import indexes
from airflow_provider_kbatch.runtime.errors import ConfigError
from airflow_provider_kbatch.runtime.schema import validate_contract

INDEX = "KBATCH_INDEX"
INDEX_MAP = "KBATCH_INDEX_MAP"
JOB_COMPLETION_INDEX = "JOB_COMPLETION_INDEX"
RUN_ID = "KBATCH_RUN_ID"
TRY_NUMBER = "KBATCH_TRY_NUMBER"
STAGE = "KBATCH_STAGE"
IMAGE = "KBATCH_IMAGE"
OUTPUT_DIR = "KBATCH_OUTPUT_DIR"
OUTPUT_CONTRACT = "KBATCH_OUTPUT_CONTRACT"
STAGE_INDEXES = "KBATCH_STAGE_INDEXES"
CHECKPOINT_DIR = "KBATCH_CHECKPOINT_DIR"
TERMINATION_MESSAGE_PATH = "KBATCH_TERMINATION_MESSAGE_PATH"
LOG_FORMAT = "KBATCH_LOG_FORMAT"
# compensation (on_failure= and the quarantine step of a failed stage)
FAILED_INDEXES = "KBATCH_FAILED_INDEXES"  # logical indexes that failed in the try ("1,4-5")
QUARANTINE_PATH = "KBATCH_QUARANTINE_PATH"  # where the try's partial output was moved ("" if none)
FINAL = "KBATCH_FINAL"  # "true" when no Airflow retry of the stage remains
QUARANTINE_SOURCE = "KBATCH_QUARANTINE_SOURCE"  # quarantine step: the output directory
KEEP_INDEXES = "KBATCH_KEEP_INDEXES"  # quarantine step: completed indexes whose parts stay

_DIGITS = re.compile(r"^\d+$")
_UNEXPANDED = re.compile(r"^\$\([A-Za-z_][A-Za-z0-9_]*\)$")
_NON_ALNUM = re.compile(r"[^A-Z0-9]")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _non_negative_int(name: str, value: str) -> int:
    text = value.strip()
    if not _DIGITS.match(text):
        raise ConfigError(f"{name}={value!r}: expected a non-negative integer")
    return int(text)


def _is_set(value: str | None) -> bool:
    """False for unset, empty, and an unexpanded ``$(VAR)`` reference.

    Kubernetes leaves ``$(JOB_COMPLETION_INDEX)`` verbatim when the variable does not exist (a
    NonIndexed Job), so such a value means "not set" rather than "malformed".
    """
    return value is not None and value.strip() != "" and not _UNEXPANDED.match(value.strip())


def index(env: Mapping[str, str] | None = None) -> int:
    """The logical index this pod works on.

    - ``KBATCH_INDEX_MAP`` set (a resumed attempt runs a subset of logical indexes, e.g.
      ``"0-2,5,9-12"``): its ``n``-th element with ``n = JOB_COMPLETION_INDEX``;
    - else ``KBATCH_INDEX``; else ``JOB_COMPLETION_INDEX``; else ``0`` (a single-pod stage).

    Raises :class:`ConfigError` naming the variable when a value is malformed, when the map is
    set without ``JOB_COMPLETION_INDEX`` or when the position is beyond the end of the map.
    """
    e = _env(env)
    index_map = e.get(INDEX_MAP)
    if index_map is not None:
        try:
            ranges = indexes.parse_ranges(index_map, what=INDEX_MAP)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        local = e.get(JOB_COMPLETION_INDEX)
        if not _is_set(local):
            raise ConfigError(
                f"{INDEX_MAP} is set ({index_map!r}) but {JOB_COMPLETION_INDEX} is not: "
                "an index map needs an Indexed Job"
            )
        assert local is not None
        n = _non_negative_int(JOB_COMPLETION_INDEX, local)
        try:
            return indexes.nth(ranges, n)
        except IndexError:
            raise ConfigError(
                f"{JOB_COMPLETION_INDEX}={n} is beyond the end of {INDEX_MAP}={index_map!r} "
                f"({indexes.count(ranges)} indexes)"
            ) from None
    for name in (INDEX, JOB_COMPLETION_INDEX):
        value = e.get(name)
        if _is_set(value):
            assert value is not None
            return _non_negative_int(name, value)
    return 0


def _required(name: str, env: Mapping[str, str] | None, purpose: str) -> str:
    value = _env(env).get(name, "")
    if not value.strip():
        raise ConfigError(
            f"{name} is not set: {purpose} (the operator sets it; set it yourself to run locally)"
        )
    return value


def run_id(env: Mapping[str, str] | None = None) -> str:
    """The Airflow run id of the DAG run (``KBATCH_RUN_ID``)."""
    return _required(RUN_ID, env, "the DAG run this pod belongs to")


def stage(env: Mapping[str, str] | None = None) -> str:
    """The stage (task) name (``KBATCH_STAGE``)."""
    return _required(STAGE, env, "the stage this pod runs")


def try_number(env: Mapping[str, str] | None = None) -> int:
    """The Airflow try that submitted this pod's Job (``KBATCH_TRY_NUMBER``, 1 when unset).

    A resumed attempt's pods see the try that resumed them; an adopted Job keeps the try that
    created it.
    """
    value = _env(env).get(TRY_NUMBER)
    return _non_negative_int(TRY_NUMBER, value) if value is not None and _is_set(value) else 1


def image(env: Mapping[str, str] | None = None) -> str | None:
    """The producing image recorded in manifests (``KBATCH_IMAGE``), or ``None``."""
    value = _env(env).get(IMAGE, "").strip()
    return value or None


def output_dir(env: Mapping[str, str] | None = None) -> Path:
    """The stage's own output directory (``KBATCH_OUTPUT_DIR``), mounted read-write."""
    return Path(_required(OUTPUT_DIR, env, "the stage's output directory"))


def input_env_name(name: str) -> str:
    """``KBATCH_INPUT_<NAME>_DIR`` for an input name: upper-cased, every non-alphanumeric -> ``_``.

    The operator uses this same function to set the variable, so both sides agree.
    """
    if not name:
        raise ConfigError("an input name must not be empty")
    return f"KBATCH_INPUT_{_NON_ALNUM.sub('_', name.upper())}_DIR"


def input_contract_env_name(name: str) -> str:
    """``KBATCH_INPUT_<NAME>_CONTRACT``: the contract the stage accepts for that input (JSON)."""
    return input_env_name(name)[: -len("_DIR")] + "_CONTRACT"


def input_dir(name: str, env: Mapping[str, str] | None = None) -> Path:
    """The read-only directory of the upstream output ``name``."""
    e = _env(env)
    var = input_env_name(name)
    value = e.get(var, "")
    if not value.strip():
        known = sorted(k for k in e if k.startswith("KBATCH_INPUT_") and k.endswith("_DIR"))
        raise ConfigError(
            f"input {name!r}: {var} is not set; inputs of this stage: {', '.join(known) or 'none'}"
        )
    return Path(value)


def checkpoint_root(env: Mapping[str, str] | None = None) -> Path:
    """The stage's checkpoint root (``KBATCH_CHECKPOINT_DIR``), shared by all its indexes."""
    return Path(_required(CHECKPOINT_DIR, env, "the stage needs checkpoint=True"))


def checkpoint_dir(env: Mapping[str, str] | None = None, *, create: bool = True) -> Path:
    """This index's checkpoint directory: ``$KBATCH_CHECKPOINT_DIR/<logical index>``.

    Keyed by the *logical* index, so a resumed attempt (where the Job-local index differs) finds
    the checkpoint the earlier attempt wrote. Created when missing unless ``create=False``.
    """
    path = checkpoint_root(env) / str(index(env))
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def stage_indexes(env: Mapping[str, str] | None = None) -> indexes.Ranges | None:
    """All logical indexes of the stage (``KBATCH_STAGE_INDEXES``, e.g. ``"0-7"``), if the operator set it."""
    value = _env(env).get(STAGE_INDEXES)
    if value is None or not value.strip():
        return None
    try:
        return indexes.parse_ranges(value, what=STAGE_INDEXES)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def contract_from_env(var: str, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """A contract dict from the JSON in variable ``var``, or ``None`` when unset or empty."""
    raw = _env(env).get(var)
    if raw is None or not raw.strip():
        return None
    try:
        return validate_contract(json.loads(raw))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"{var}: {exc}") from None


def output_contract(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The contract this stage produces (``KBATCH_OUTPUT_CONTRACT``, JSON), or ``None``."""
    return contract_from_env(OUTPUT_CONTRACT, env)


def accepted_contract(name: str, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The contract this stage accepts for input ``name`` (``KBATCH_INPUT_<NAME>_CONTRACT``), or ``None``."""
    return contract_from_env(input_contract_env_name(name), env)
