"""``python -m airflow_provider_kbatch.runtime``: the helper for shell stages and finalize steps.

Commands (exit status 0 on success, 1 with a message on stderr on a kbatch error, 2 on usage):

- ``index``: print the logical index (resume-aware), e.g. ``i=$(python -m ... index)``.
- ``finalize [--dir D] [--expected 0-7] [--rehash] [--no-attach]``: merge the part manifests into
  ``_kbatch/manifest.json`` and print its summary.
- ``verify NAME [--contract JSON] [--no-rehash]``: verify input ``NAME``; print its summary.
- ``emit JSON``: write a JSON object as the termination message.
- ``log MSG [key=value ...]``: one structured log line.
- ``quarantine``: move a failed try's partial output aside (``$KBATCH_QUARANTINE_SOURCE`` ->
  ``$KBATCH_QUARANTINE_PATH``, keeping the parts of ``$KBATCH_KEEP_INDEXES``); prints the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from airflow_provider_kbatch.runtime import env as kenv
from airflow_provider_kbatch.runtime import manifest as fmt
from airflow_provider_kbatch.runtime.errors import KbatchRuntimeError
from airflow_provider_kbatch.runtime.inputs import verify_input
from airflow_provider_kbatch.runtime.logs import log
from airflow_provider_kbatch.runtime.outputs import finalize_manifest
from airflow_provider_kbatch.runtime.results import emit_result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_kbatch.runtime", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("index", help="print the logical index")
    fin = sub.add_parser("finalize", help="merge part manifests into _kbatch/manifest.json")
    fin.add_argument("--dir", help="output directory (default: $KBATCH_OUTPUT_DIR)")
    fin.add_argument(
        "--expected", help="indexes that must have a part, e.g. 0-7 (default: $KBATCH_STAGE_INDEXES)"
    )
    fin.add_argument("--rehash", action="store_true", help="re-check every file's sha256, not only its size")
    fin.add_argument(
        "--no-attach", action="store_true", help="do not write the summary as the termination message"
    )
    ver = sub.add_parser("verify", help="verify an input's manifest, contract and checksums")
    ver.add_argument("name")
    ver.add_argument("--contract", help="accepted contract as JSON (default: $KBATCH_INPUT_<NAME>_CONTRACT)")
    ver.add_argument("--no-rehash", action="store_true", help="check sizes only")
    emit = sub.add_parser("emit", help="write a JSON object as the termination message")
    emit.add_argument("json")
    lg = sub.add_parser("log", help="write one structured log line")
    lg.add_argument("msg")
    lg.add_argument("fields", nargs="*", metavar="key=value")
    sub.add_parser("quarantine", help="move a failed try's partial output aside")
    return parser


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise KbatchRuntimeError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise KbatchRuntimeError(f"{what}: expected a JSON object")
    return value


def _run(args: argparse.Namespace) -> None:
    if args.command == "index":
        sys.stdout.write(f"{kenv.index()}\n")
    elif args.command == "finalize":
        merged = finalize_manifest(
            args.dir, expected=args.expected, rehash=args.rehash, attach_result=not args.no_attach
        )
        sys.stdout.write(json.dumps(fmt.summary(merged)) + "\n")
    elif args.command == "verify":
        contract = _json_object(args.contract, "--contract") if args.contract else None
        manifest = verify_input(args.name, contract, rehash=not args.no_rehash)
        sys.stdout.write(json.dumps(fmt.summary(manifest)) + "\n")
    elif args.command == "emit":
        emit_result(_json_object(args.json, "emit"))
    elif args.command == "log":
        fields = {}
        for item in args.fields:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise KbatchRuntimeError(f"log field {item!r}: expected key=value")
            fields[f"{key}_" if key in ("fmt", "stream") else key] = value
        log(args.msg, **fields)
    elif args.command == "quarantine":
        _quarantine()


def _quarantine() -> None:
    import os
    from pathlib import Path

    from airflow_provider_kbatch.runtime import indexes
    from airflow_provider_kbatch.runtime.quarantine import quarantine

    source, target = os.environ.get(kenv.QUARANTINE_SOURCE), os.environ.get(kenv.QUARANTINE_PATH)
    if not source or not target:
        raise KbatchRuntimeError(f"{kenv.QUARANTINE_SOURCE} and {kenv.QUARANTINE_PATH} must be set")
    keep = indexes.iter_indexes(indexes.parse_ranges(os.environ.get(kenv.KEEP_INDEXES, ""), what="keep"))
    report = quarantine(Path(source), Path(target), keep)
    sys.stdout.write(json.dumps({**report, "moved": len(report["moved"])}) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except (KbatchRuntimeError, ValueError, TypeError, OSError) as exc:
        sys.stderr.write(f"kbatch runtime {args.command}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
