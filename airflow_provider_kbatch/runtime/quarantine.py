"""Move a failed stage's partial output aside (standard library only).

Run in the compensation Job's pod (``python -m airflow_provider_kbatch.runtime quarantine``) with
the run's directory of the workspace mounted, so the moves are ``rename(2)`` calls on one file
system: no copy, whatever the size.

What stays in the output directory: the part manifest (``_kbatch/parts/<i>.json``) of every index
in ``keep`` (the indexes the run ledger records as completed, which a resumed retry does not run
again) and the files those parts list. Everything else -- files of failed indexes (written before
they failed, so named by no part), parts of indexes that are not kept, the merged manifest, atomic
writes' temporary files -- is moved under ``target`` with its relative path, and
``target/_kbatch_quarantine.json`` lists what was moved. An empty ``keep`` moves everything (a stage
that cannot resume). Running it twice moves nothing the second time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.runtime import manifest as fmt

REPORT = "_kbatch_quarantine.json"


def _kept_files(source: Path, keep: Iterable[int]) -> set[str]:
    kept: set[str] = set()
    for index in keep:
        part = fmt.part_path(source, index)
        try:
            loaded = json.loads(part.read_bytes())
            files = [str(f["path"]) for f in loaded.get("files", [])]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue  # no readable part: the index is not complete on disk, nothing of it is kept
        if loaded.get("index") != index:
            continue
        kept.add(part.relative_to(source).as_posix())
        kept.update(files)
    return kept


def quarantine(source: Path, target: Path, keep: Iterable[int]) -> dict[str, Any]:
    """Move everything of ``source`` not kept (see the module) under ``target``; the report."""
    kept = _kept_files(source, keep)
    moved: list[str] = []
    size = 0
    if source.is_dir():
        for root, dirs, files in os.walk(source, topdown=True):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                rel = path.relative_to(source).as_posix()
                if rel in kept:
                    continue
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                size += path.lstat().st_size
                os.replace(path, dest)
                moved.append(rel)
        for root, _dirs, _files in os.walk(source, topdown=False):
            if Path(root) != source and not os.listdir(root):
                Path(root).rmdir()
    report = {"moved": sorted(moved), "bytes": size, "kept_files": len(kept)}
    target.mkdir(parents=True, exist_ok=True)
    previous = target / REPORT
    if previous.is_file():  # a second run: keep what the first one moved
        try:
            earlier = json.loads(previous.read_bytes())
            report["moved"] = sorted(set(earlier.get("moved", [])) | set(moved))
            report["bytes"] = int(earlier.get("bytes", 0)) + size
        except (OSError, ValueError, TypeError):
            pass
    previous.write_bytes(fmt.canonical_json(report))
    return report
