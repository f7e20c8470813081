"""Data manifests as typed, immutable values (pure).

The format is the one the in-container helper writes (``_kbatch/manifest.json``), defined once in
:mod:`airflow_provider_kbatch.runtime.manifest`; this module parses it for the operator, sensors
and the ledger. :func:`manifest_digest` is the runtime's, so a digest computed here equals the one
a pod reported and ``sha256sum _kbatch/manifest.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.runtime import manifest as fmt
from airflow_provider_kbatch.runtime.results import OUTPUT_KEY
from airflow_provider_kbatch.spec.intervals import IndexSet

SCHEMA_VERSION = fmt.SCHEMA_VERSION
manifest_digest = fmt.manifest_digest
canonical_json = fmt.canonical_json


class ManifestError(KbatchError, ValueError):
    """A manifest is malformed or written by a newer schema version; the message lists every problem."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    records: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "records": self.records}


@dataclass(frozen=True)
class DataManifest:
    """A stage's merged output manifest (``kind == "kbatch.manifest"``)."""

    schema_version: int
    stage: str
    run_id: str
    image: str | None
    indexes: IndexSet
    files: tuple[FileEntry, ...]
    bytes: int
    records: int | None
    contract: Contract | None
    created_at: str
    digest: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (digest excluded: it is computed from this)."""
        return {
            "schema_version": self.schema_version,
            "kind": fmt.KIND_MANIFEST,
            "stage": self.stage,
            "run_id": self.run_id,
            "image": self.image,
            "indexes": str(self.indexes),
            "files": [f.to_dict() for f in self.files],
            "bytes": self.bytes,
            "records": self.records,
            "contract": self.contract.to_dict() if self.contract is not None else None,
            "created_at": self.created_at,
        }


def parse_manifest(data: Mapping[str, Any]) -> DataManifest:
    """Check and parse a manifest dict.

    Raises :class:`ManifestError` listing every problem: a ``schema_version`` newer than this
    provider understands (upgrade it), a wrong ``kind``, missing or mistyped fields, bad file
    entries, duplicate paths, totals that do not add up, a malformed contract.
    """
    errors = fmt.manifest_errors(data, kind=fmt.KIND_MANIFEST)
    if errors:
        raise ManifestError("data manifest: " + "; ".join(errors))
    contract = data.get("contract")
    return DataManifest(
        schema_version=data["schema_version"],
        stage=data["stage"],
        run_id=data["run_id"],
        image=data.get("image"),
        indexes=IndexSet.parse(data["indexes"]),
        files=tuple(FileEntry(f["path"], f["size"], f["sha256"], f.get("records")) for f in data["files"]),
        bytes=data["bytes"],
        records=data["records"],
        contract=Contract.from_dict(contract) if contract is not None else None,
        created_at=data["created_at"],
        digest=fmt.manifest_digest(data),
    )


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
