"""Consumer side: verify an upstream output before reading it.

``verify_input("events")`` reads ``$KBATCH_INPUT_EVENTS_DIR/_kbatch/manifest.json``, checks its
schema, the contract the stage accepts (argument, or ``KBATCH_INPUT_EVENTS_CONTRACT``), and the
size and sha256 of every listed file. Any mismatch raises before a byte of data is used; the
input (mounted read-only) is never modified. Read only the files the manifest lists: anything
else in the directory (a killed attempt's leftovers) is not part of the output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.runtime import env as kenv
from airflow_provider_kbatch.runtime import manifest as fmt
from airflow_provider_kbatch.runtime.errors import ContractViolation, InputVerificationError
from airflow_provider_kbatch.runtime.schema import contract_errors


def read_manifest(directory: Path, *, what: str) -> dict[str, Any]:
    """Read and structurally check ``<directory>/_kbatch/manifest.json``."""
    path = fmt.manifest_path(directory)
    if not path.is_file():
        parts_dir = directory / fmt.PARTS_DIR
        parts = len(list(parts_dir.glob("*.json"))) if parts_dir.is_dir() else 0
        raise InputVerificationError(
            f"{what}: no manifest at {path} ({parts} part manifest(s) present): "
            "the producing stage did not finalize its output"
        )
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputVerificationError(f"{what}: manifest {path} cannot be read: {exc}") from None
    errors = fmt.manifest_errors(manifest)
    if errors:
        raise InputVerificationError(f"{what}: manifest {path} is malformed: " + "; ".join(errors))
    return dict(manifest)


def verify_files(directory: Path, manifest: Mapping[str, Any], *, what: str, rehash: bool = True) -> None:
    """Check that every file of ``manifest`` exists under ``directory`` with its size (and sha256)."""
    for entry in manifest["files"]:
        target = directory / entry["path"]
        label = f"{what}: file {entry['path']!r}"
        try:
            mismatch = fmt.file_mismatch(target, entry, rehash=rehash)
        except fmt.FileMissing:
            raise InputVerificationError(
                f"{label}: expected {entry['size']} bytes, found no file at {target}"
            ) from None
        if mismatch is not None:
            raise InputVerificationError(f"{label}: {mismatch}")


def verify_input(
    name: str,
    expect_contract: Mapping[str, Any] | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
    rehash: bool = True,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Verify input ``name`` and return its manifest (``files`` are relative to the input directory).

    Raises :class:`InputVerificationError` naming the file, expected and found (size, sha256, a
    missing file or manifest), or :class:`ContractViolation` naming the field, expected and found
    type when the manifest's contract is not compatible with ``expect_contract``.
    """
    e = os.environ if env is None else env
    base = Path(directory) if directory is not None else kenv.input_dir(name, e)
    consumer = e.get(kenv.STAGE)
    what = f"stage {consumer!r}: input {name!r}" if consumer else f"input {name!r}"
    manifest = read_manifest(base, what=what)
    contract = expect_contract if expect_contract is not None else kenv.accepted_contract(name, e)
    if contract is not None:
        errors = contract_errors(manifest.get("contract"), contract, stage=consumer or None)
        if errors:
            producer = f"produced by stage {manifest['stage']!r}"
            raise ContractViolation(
                f"{what} ({producer}) violates the accepted contract:\n" + "\n".join(errors)
            )
    verify_files(base, manifest, what=what, rehash=rehash)
    return manifest
