"""The on-disk format of data manifests: layout, canonical JSON, digest, structural checks.

An output directory holds the stage's files plus a ``_kbatch/`` directory::

    <output dir>/
      part-00003.jsonl ...           files written by the stage (any layout, any names)
      _kbatch/parts/<index>.json     one part manifest per logical index (written by OutputWriter)
      _kbatch/manifest.json          the merged manifest (written by finalize_manifest)

Both are canonical JSON (sorted keys, no spaces, UTF-8), so ``sha256sum _kbatch/manifest.json``
equals :func:`manifest_digest` of its content. Schema version 1::

    {"schema_version": 1, "kind": "kbatch.manifest" | "kbatch.part",
     "stage": str, "run_id": str, "image": str | null,
     "index": int                      (parts only)
     "indexes": "0-7"                  (merged manifest only: the parts merged, IndexSet string)
     "files": [{"path": "a/b.jsonl", "size": int, "sha256": hex, "records": int | null}],
     "records": int | null, "bytes": int,
     "contract": {"name": str, "version": "MAJOR.MINOR", "fields": {field: type}} | null,
     "created_at": ISO-8601 UTC}

``records`` totals the files that have a count and is ``null`` when none has. This module is the
one definition of the format; the operator reads only the summary a pod reports
(:mod:`airflow_provider_kbatch.pipeline.summary`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_provider_kbatch.runtime import indexes
from airflow_provider_kbatch.runtime.schema import validate_contract

SCHEMA_VERSION = 1
KIND_MANIFEST = "kbatch.manifest"
KIND_PART = "kbatch.part"
META_DIR = "_kbatch"
MANIFEST_PATH = f"{META_DIR}/manifest.json"
PARTS_DIR = f"{META_DIR}/parts"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN: the same bytes for the same content."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of the canonical JSON of a manifest."""
    return "sha256:" + hashlib.sha256(canonical_json(dict(manifest))).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class FileMissing(LookupError):
    """A file a manifest lists is not there (``file_mismatch``); the caller words the error."""


def file_mismatch(target: Path, entry: Mapping[str, Any], *, rehash: bool) -> str | None:
    """How the file at ``target`` differs from its manifest ``entry`` (size, then sha256 when
    ``rehash``), or ``None`` when it matches. Raises :class:`FileMissing` when it cannot be
    found (any ``OSError`` of ``stat``)."""
    try:
        size = target.stat().st_size
    except OSError:
        raise FileMissing(str(target)) from None
    if size != entry["size"]:
        return f"expected {entry['size']} bytes, found {size}"
    if rehash:
        _, sha = sha256_file(target)
        if sha != entry["sha256"]:
            return f"expected sha256 {entry['sha256']}, found {sha}"
    return None


def check_relpath(path: Any) -> str:
    """A file path as recorded in a manifest: relative, POSIX, no ``..``, not under ``_kbatch/``."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"file path {path!r}: expected a non-empty relative path")
    pure = PurePosixPath(path)
    if pure.is_absolute() or "\\" in path or any(p in ("..", ".", "") for p in path.split("/")):
        raise ValueError(f"file path {path!r}: expected a normalised relative path without '..'")
    if pure.parts[0] == META_DIR:
        raise ValueError(f"file path {path!r}: {META_DIR}/ is reserved for kbatch's own metadata")
    return path


def resolve_in(directory: Path, relpath: str) -> Path:
    """``directory / relpath`` after :func:`check_relpath`."""
    return directory / check_relpath(relpath)


def part_path(directory: Path, index: int) -> Path:
    return directory / PARTS_DIR / f"{index}.json"


def manifest_path(directory: Path) -> Path:
    return directory / MANIFEST_PATH


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _file_errors(n: int, entry: Any) -> list[str]:
    where = f"files[{n}]"
    if not isinstance(entry, Mapping):
        return [f"{where}: expected an object"]
    errors = []
    try:
        check_relpath(entry.get("path"))
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
    if not _is_count(entry.get("size")):
        errors.append(f"{where}.size: expected a non-negative integer, found {entry.get('size')!r}")
    if not isinstance(entry.get("sha256"), str) or not _SHA256.match(entry["sha256"]):
        errors.append(f"{where}.sha256: expected 64 lowercase hex digits, found {entry.get('sha256')!r}")
    if entry.get("records") is not None and not _is_count(entry.get("records")):
        errors.append(
            f"{where}.records: expected a non-negative integer or null, found {entry.get('records')!r}"
        )
    return errors


def total_records(files: Sequence[Mapping[str, Any]]) -> int | None:
    """Sum of the files' record counts; ``None`` when no file has one."""
    counts = [f["records"] for f in files if f.get("records") is not None]
    return sum(counts) if counts else None


def _header_errors(manifest: Mapping[str, Any], kind: str) -> list[str]:
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return [f"schema_version: expected a positive integer, found {version!r}"]
    if version > SCHEMA_VERSION:
        return [
            f"schema_version: found {version}, this kbatch understands up to {SCHEMA_VERSION}; "
            "upgrade the provider / runtime that reads it"
        ]
    if manifest.get("kind") != kind:
        return [f"kind: expected {kind!r}, found {manifest.get('kind')!r}"]
    errors = []
    for key in ("stage", "run_id", "created_at"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            errors.append(f"{key}: expected a non-empty string, found {manifest.get(key)!r}")
    if manifest.get("image") is not None and not isinstance(manifest.get("image"), str):
        errors.append(f"image: expected a string or null, found {manifest.get('image')!r}")
    if kind == KIND_PART and not _is_count(manifest.get("index")):
        errors.append(f"index: expected a non-negative integer, found {manifest.get('index')!r}")
    if kind == KIND_MANIFEST:
        try:
            indexes.parse_ranges(manifest.get("indexes"), what="indexes")  # type: ignore[arg-type]
        except (ValueError, AttributeError) as exc:
            errors.append(f"indexes: {exc}")
    return errors


def manifest_errors(manifest: Any, *, kind: str = KIND_MANIFEST) -> list[str]:
    """Every structural problem of a manifest (or part, ``kind=KIND_PART``); [] when well-formed.

    Checks the schema version (a newer one is refused with a clear message), the header fields,
    every file entry, duplicate paths, the contract, and that ``bytes``/``records`` equal the
    totals of the files.
    """
    if not isinstance(manifest, Mapping):
        return [f"expected a JSON object, found {type(manifest).__name__}"]
    errors = _header_errors(manifest, kind)
    if errors and errors[0].startswith("schema_version"):
        return errors
    files = manifest.get("files")
    if not isinstance(files, list):
        return [*errors, f"files: expected a list, found {type(files).__name__}"]
    seen: set[str] = set()
    for n, entry in enumerate(files):
        file_errors = _file_errors(n, entry)
        errors.extend(file_errors)
        if not file_errors:
            if entry["path"] in seen:
                errors.append(f"files[{n}]: duplicate path {entry['path']!r}")
            seen.add(entry["path"])
    if not errors:
        size = sum(f["size"] for f in files)
        if manifest.get("bytes") != size:
            errors.append(f"bytes: expected {size} (sum of file sizes), found {manifest.get('bytes')!r}")
        records = total_records(files)
        if manifest.get("records") != records:
            errors.append(
                f"records: expected {records} (sum of file records), found {manifest.get('records')!r}"
            )
    if manifest.get("contract") is not None:
        try:
            validate_contract(manifest["contract"])
        except ValueError as exc:
            errors.append(f"contract: {exc}")
    return errors


def summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A few hundred bytes describing an output, small enough for a termination message."""
    contract = manifest.get("contract")
    return {
        "manifest_digest": manifest_digest(manifest),
        "stage": manifest.get("stage"),
        "indexes": manifest.get("indexes"),
        "files": len(manifest.get("files") or ()),
        "bytes": manifest.get("bytes"),
        "records": manifest.get("records"),
        "contract": {"name": contract["name"], "version": contract["version"]} if contract else None,
    }
