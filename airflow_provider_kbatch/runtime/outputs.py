"""Producer side: record the files an index writes, publish its part, merge parts into the manifest.

Typical use inside a stage::

    from airflow_provider_kbatch import runtime

    with runtime.OutputWriter() as out:                  # KBATCH_OUTPUT_DIR, logical index
        out.write_jsonl(f"part-{runtime.index():05d}.jsonl", rows)   # validated against the contract
        out.add("extra/stats.parquet", records=12)       # a file written by another library

Leaving the ``with`` block without an exception writes ``_kbatch/parts/<index>.json``
atomically. When the operator set ``KBATCH_STAGE_INDEXES`` (every logical index of the stage),
the index that completes the set also merges the parts into ``_kbatch/manifest.json``; merging is
deterministic (``created_at`` is the latest part's), so two indexes finishing together write the
same bytes. Otherwise call :func:`finalize_manifest` (or ``python -m airflow_provider_kbatch.runtime
finalize``) once all indexes are done.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from airflow_provider_kbatch.runtime import env as kenv
from airflow_provider_kbatch.runtime import indexes, logs, results
from airflow_provider_kbatch.runtime import manifest as fmt
from airflow_provider_kbatch.runtime.atomic import atomic_file, atomic_write_bytes
from airflow_provider_kbatch.runtime.errors import ContractViolation, ManifestError
from airflow_provider_kbatch.runtime.schema import record_errors, validate_contract


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class OutputWriter:
    """Records the files one index writes to the output directory and publishes its part manifest.

    Every argument defaults to the environment the operator set: ``directory`` to
    ``KBATCH_OUTPUT_DIR``, ``index`` to :func:`runtime.index`, ``stage``/``run_id``/``image`` to
    ``KBATCH_STAGE``/``KBATCH_RUN_ID``/``KBATCH_IMAGE``, ``contract`` to ``KBATCH_OUTPUT_CONTRACT``.
    Records written with :meth:`write_jsonl` are validated against the contract's fields.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        index: int | None = None,
        stage: str | None = None,
        run_id: str | None = None,
        image: str | None = None,
        contract: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else kenv.output_dir(env)
        self.index = kenv.index(env) if index is None else index
        self.stage = stage or kenv.stage(env)
        self.run_id = run_id or kenv.run_id(env)
        self.image = image if image is not None else kenv.image(env)
        self.contract = validate_contract(contract) if contract is not None else kenv.output_contract(env)
        self._env = env
        self._files: dict[str, dict[str, Any]] = {}

    @property
    def files(self) -> list[dict[str, Any]]:
        """The file entries recorded so far, sorted by path."""
        return [dict(self._files[p]) for p in sorted(self._files)]

    def path(self, relpath: str) -> Path:
        """Absolute path of ``relpath`` in the output directory (parents created; ``..`` refused)."""
        target = fmt.resolve_in(self.directory, relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add(self, relpath: str, *, records: int | None = None) -> dict[str, Any]:
        """Record a file already written under the output directory (hashes it)."""
        target = fmt.resolve_in(self.directory, relpath)
        if not target.is_file():
            raise ManifestError(f"output file {relpath!r}: not found at {target}")
        if records is not None and (not isinstance(records, int) or records < 0):
            raise ValueError(
                f"output file {relpath!r}: records must be a non-negative integer, got {records!r}"
            )
        size, sha = fmt.sha256_file(target)
        return self._record(relpath, size, sha, records)

    def _record(self, relpath: str, size: int, sha: str, records: int | None) -> dict[str, Any]:
        entry = {"path": relpath, "size": size, "sha256": sha, "records": records}
        self._files[relpath] = entry
        return dict(entry)

    def write_bytes(self, relpath: str, data: bytes, *, records: int | None = None) -> dict[str, Any]:
        """Write ``data`` atomically to ``relpath`` and record it."""
        atomic_write_bytes(self.path(relpath), data)
        return self._record(relpath, len(data), hashlib.sha256(data).hexdigest(), records)

    def write_text(self, relpath: str, text: str, *, records: int | None = None) -> dict[str, Any]:
        """Write UTF-8 ``text`` atomically to ``relpath`` and record it."""
        return self.write_bytes(relpath, text.encode("utf-8"), records=records)

    def write_jsonl(
        self, relpath: str, rows: Iterable[Mapping[str, Any]], *, validate: bool = True
    ) -> dict[str, Any]:
        """Stream ``rows`` as JSON lines to ``relpath`` (atomically), counting and hashing them.

        With a contract and ``validate=True``, the first row that violates it raises
        :class:`ContractViolation` (naming the stage, row, field, expected and found) and nothing
        is published.
        """
        target = self.path(relpath)
        schema = self.contract["fields"] if (validate and self.contract) else None
        digest, size, count = hashlib.sha256(), 0, 0
        # 0o666 before the umask: the permissions open() would give a new file
        with atomic_file(target, mode=0o666) as fh:
            for count, row in enumerate(rows, start=1):
                if schema is not None:
                    errors = record_errors(
                        row, schema, where=f"stage {self.stage!r}: {relpath} record {count - 1}"
                    )
                    if errors:
                        raise ContractViolation("\n".join(errors))
                line = (
                    json.dumps(row, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
                ).encode()
                fh.write(line)
                digest.update(line)
                size += len(line)
        return self._record(relpath, size, digest.hexdigest(), count)

    def part(self, *, created_at: str | None = None) -> dict[str, Any]:
        """The part manifest this writer would publish."""
        files = self.files
        return {
            "schema_version": fmt.SCHEMA_VERSION,
            "kind": fmt.KIND_PART,
            "stage": self.stage,
            "run_id": self.run_id,
            "image": self.image,
            "index": self.index,
            "files": files,
            "bytes": sum(f["size"] for f in files),
            "records": fmt.total_records(files),
            "contract": self.contract,
            "created_at": created_at or utc_now(),
        }

    def commit(self, *, finalize: bool | None = None) -> Path:
        """Publish ``_kbatch/parts/<index>.json`` atomically; maybe merge the manifest.

        ``finalize=None`` merges when ``KBATCH_STAGE_INDEXES`` is set and every part is present;
        ``True`` merges whatever parts exist; ``False`` never merges. Returns the part's path.
        """
        path = atomic_write_bytes(fmt.part_path(self.directory, self.index), fmt.canonical_json(self.part()))
        expected = kenv.stage_indexes(self._env)
        if finalize or (
            finalize is None and expected is not None and _all_parts_present(self.directory, expected)
        ):
            finalize_manifest(self.directory, stage=self.stage, run_id=self.run_id, expected=expected)
        return path

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()


def _part_indexes(directory: Path) -> set[int]:
    parts = directory / fmt.PARTS_DIR
    if not parts.is_dir():
        return set()
    found = set()
    for p in parts.iterdir():
        if p.suffix == ".json" and p.stem.isdigit():
            found.add(int(p.stem))
    return found


def _all_parts_present(directory: Path, expected: indexes.Ranges) -> bool:
    present = _part_indexes(directory)
    return all(i in present for i in indexes.iter_indexes(expected))


def read_part(directory: Path, index: int) -> dict[str, Any]:
    """Read and check one part manifest."""
    path = fmt.part_path(directory, index)
    try:
        part: dict[str, Any] = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"part manifest {path}: cannot be read ({exc})") from None
    errors = fmt.manifest_errors(part, kind=fmt.KIND_PART)
    if not errors and part["index"] != index:
        errors.append(f"index: expected {index} (from the file name), found {part['index']}")
    if errors:
        raise ManifestError(f"part manifest {path}: " + "; ".join(errors))
    return part


def _expected_ranges(expected: str | int | indexes.Ranges | None, directory: Path) -> indexes.Ranges:
    if expected is None:
        return indexes.parse_ranges(indexes.format_ranges(_part_indexes(directory)))
    if isinstance(expected, int):
        return ((0, expected - 1),) if expected > 0 else ()
    if isinstance(expected, str):
        return indexes.parse_ranges(expected, what="expected indexes")
    return expected


def _merge_files(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    owners: dict[str, int] = {}
    files: list[dict[str, Any]] = []
    for part in parts:
        for entry in part["files"]:
            if entry["path"] in owners:
                raise ManifestError(
                    f"file {entry['path']!r} is claimed by the parts of index {owners[entry['path']]} and index "
                    f"{part['index']}: each index must write its own files"
                )
            owners[entry["path"]] = part["index"]
            files.append(dict(entry))
    return sorted(files, key=lambda f: f["path"])


def _common(parts: list[dict[str, Any]], key: str) -> Any:
    """The value every part has for ``key`` (``None`` without parts); parts that disagree are an error."""
    values = {json.dumps(p.get(key), sort_keys=True) for p in parts}
    if len(values) > 1:
        raise ManifestError(f"parts disagree on {key}: found {', '.join(sorted(values))}")
    return parts[0].get(key) if parts else None


def _check_files(directory: Path, files: list[dict[str, Any]], *, rehash: bool) -> None:
    for entry in files:
        target = directory / entry["path"]
        try:
            mismatch = fmt.file_mismatch(target, entry, rehash=rehash)
        except fmt.FileMissing:
            raise ManifestError(
                f"file {entry['path']!r}: listed in a part manifest but missing at {target}"
            ) from None
        if mismatch is not None:
            raise ManifestError(f"file {entry['path']!r}: {mismatch}")


def finalize_manifest(
    directory: str | os.PathLike[str] | None = None,
    *,
    stage: str | None = None,
    run_id: str | None = None,
    expected: str | int | indexes.Ranges | None = None,
    contract: Mapping[str, Any] | None = None,
    rehash: bool = False,
    attach_result: bool = True,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Merge ``_kbatch/parts/*.json`` into ``_kbatch/manifest.json`` (atomically) and return it.

    ``expected`` is the set of logical indexes that must have a part (an IndexSet string such as
    ``"0-7"``, a count, or ``None`` for ``KBATCH_STAGE_INDEXES`` or else every part present);
    parts outside it are left out. Every part must belong to ``stage`` and ``run_id`` (default:
    the environment), and agree on the contract and image. Each file's size is checked (and its
    sha256 with ``rehash=True``). The result is deterministic: ``created_at`` is the latest
    part's. With ``attach_result``, a summary is attached to this pod's termination message.
    """
    out_dir = Path(directory) if directory is not None else kenv.output_dir(env)
    stage = stage or kenv.stage(env)
    run_id = run_id or kenv.run_id(env)
    wanted = _expected_ranges(expected if expected is not None else kenv.stage_indexes(env), out_dir)
    present = _part_indexes(out_dir)
    missing = [i for i in indexes.iter_indexes(wanted) if i not in present]
    if missing:
        raise ManifestError(
            f"stage {stage!r}: cannot finalize {out_dir}: no part manifest for indexes "
            f"{indexes.format_ranges(missing)} (of {indexes.format_ranges(indexes.iter_indexes(wanted))})"
        )
    parts = [read_part(out_dir, i) for i in indexes.iter_indexes(wanted)]
    for part in parts:
        for key, want in (("stage", stage), ("run_id", run_id)):
            if part[key] != want:
                raise ManifestError(
                    f"part manifest of index {part['index']} in {out_dir}: {key}: expected {want!r}, "
                    f"found {part[key]!r} (stale data from another stage or run)"
                )
    files = _merge_files(parts)
    _check_files(out_dir, files, rehash=rehash)
    merged = {
        "schema_version": fmt.SCHEMA_VERSION,
        "kind": fmt.KIND_MANIFEST,
        "stage": stage,
        "run_id": run_id,
        "image": _common(parts, "image"),
        "indexes": indexes.format_ranges(indexes.iter_indexes(wanted)),
        "files": files,
        "bytes": sum(f["size"] for f in files),
        "records": fmt.total_records(files),
        "contract": validate_contract(contract) if contract is not None else _common(parts, "contract"),
        "created_at": max((p["created_at"] for p in parts), default=None) or utc_now(),
    }
    atomic_write_bytes(fmt.manifest_path(out_dir), fmt.canonical_json(merged))
    if attach_result:
        try:
            results.attach_output_summary(fmt.summary(merged))
        except OSError as exc:
            logs.log(
                "could not attach the output summary to the termination message",
                level="warning",
                error=str(exc),
            )
    return merged
