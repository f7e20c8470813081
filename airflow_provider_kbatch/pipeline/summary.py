"""The output summary a pod reports when it finalized its stage's data manifest (pure).

The manifest itself is written and checked by the in-container helper
(:mod:`airflow_provider_kbatch.runtime.manifest`, the one definition of its format); the pod that
finalizes it adds ``_kbatch_output`` (digest, bytes, records, files, indexes, contract) to its
termination-message result, and :func:`split_output_summary` takes it out of the user's result for
the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_kbatch.runtime.results import OUTPUT_KEY


@dataclass(frozen=True)
class OutputSummary:
    """What a pod that finalized its stage's manifest reports (``_kbatch_output`` in its result)."""

    manifest_digest: str
    bytes: int | None
    records: int | None
    files: int | None
    indexes: str | None
    contract: dict[str, str] | None


def split_output_summary(result: Mapping[str, Any]) -> tuple[dict[str, Any], OutputSummary | None]:
    """Split a pod's termination-message result into (user result, output summary or None).

    The summary is dropped from the user-facing result; a malformed one is ignored (``None``).
    """
    user = {k: v for k, v in result.items() if k != OUTPUT_KEY}
    raw = result.get(OUTPUT_KEY)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("manifest_digest"), str):
        return user, None
    contract = raw.get("contract")
    return user, OutputSummary(
        manifest_digest=raw["manifest_digest"],
        bytes=raw.get("bytes") if isinstance(raw.get("bytes"), int) else None,
        records=raw.get("records") if isinstance(raw.get("records"), int) else None,
        files=raw.get("files") if isinstance(raw.get("files"), int) else None,
        indexes=raw.get("indexes") if isinstance(raw.get("indexes"), str) else None,
        contract=(
            {"name": str(contract.get("name")), "version": str(contract.get("version"))}
            if isinstance(contract, Mapping)
            else None
        ),
    )
