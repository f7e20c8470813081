"""Example stage ``transform``: reads the ``raw_orders`` input through the workspace, verified.

``runtime.verify_input`` checks the upstream manifest, the accepted contract (``accepts=``) and
the size and sha256 of every file before a byte is read; the input is mounted read-only. Index
``k`` of ``n`` handles every ``n``-th upstream file, drops small orders, computes the net amount,
and writes its part of the ``clean_orders`` output. ``INPUT`` names the input (default
``raw_orders``).
"""

from __future__ import annotations

import os
import sys

from airflow_provider_kbatch import runtime
from airflow_provider_kbatch.examples.orders import clean, read_jsonl
from airflow_provider_kbatch.runtime import indexes
from airflow_provider_kbatch.runtime.env import stage_indexes


def main() -> int:
    index = runtime.index()
    name = os.environ.get("INPUT", "raw_orders")
    ranges = stage_indexes()
    shards = indexes.count(ranges) if ranges else 1
    manifest = runtime.verify_input(name)
    source = runtime.input_dir(name)
    mine = [f for k, f in enumerate(manifest["files"]) if k % shards == index]
    read, kept = 0, []
    for entry in mine:
        for order in read_jsonl(source / entry["path"]):
            read += 1
            row = clean(order)
            if row is not None:
                kept.append(row)
    with runtime.OutputWriter() as out:
        out.write_jsonl(f"clean-{index:05d}.jsonl", kept)
    runtime.emit_result(
        {"index": index, "files": len(mine), "read": read, "kept": len(kept), "dropped": read - len(kept)}
    )
    runtime.log("transformed", index=index, files=len(mine), read=read, kept=len(kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
