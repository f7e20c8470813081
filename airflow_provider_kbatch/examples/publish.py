"""Example stage ``publish``: aggregates the ``clean_orders`` input into a per-category report.

One index (``completions=1``): verifies its input, sums orders and net amounts per category,
writes the report as JSONL to its output, and returns the totals as its result (XCom). ``INPUT``
names the input (default ``clean_orders``).
"""

from __future__ import annotations

import os
import sys

from airflow_provider_kbatch import runtime
from airflow_provider_kbatch.examples.orders import read_jsonl


def main() -> int:
    name = os.environ.get("INPUT", "clean_orders")
    manifest = runtime.verify_input(name)
    source = runtime.input_dir(name)
    by_category: dict[str, dict[str, int]] = {}
    for entry in manifest["files"]:
        for row in read_jsonl(source / entry["path"]):
            totals = by_category.setdefault(row["category"], {"orders": 0, "net_cents": 0})
            totals["orders"] += 1
            totals["net_cents"] += row["net_cents"]
    report = [{"category": c, **by_category[c]} for c in sorted(by_category)]
    with runtime.OutputWriter() as out:
        out.write_jsonl("report.jsonl", report)
    result = {
        "orders": sum(t["orders"] for t in by_category.values()),
        "net_cents": sum(t["net_cents"] for t in by_category.values()),
        "by_category": by_category,
        "input_manifest": runtime.manifest_digest(manifest),
    }
    runtime.emit_result(result)
    runtime.log("published", orders=result["orders"], net_cents=result["net_cents"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
