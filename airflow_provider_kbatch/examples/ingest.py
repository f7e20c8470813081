"""Example stage ``ingest``: every index writes one JSONL part of synthetic orders.

Rows are validated against the contract the operator hands over (``produces=``, in
``KBATCH_OUTPUT_CONTRACT``) as they are written; the index that completes the set merges the
parts into the output's manifest. ``ORDERS_PER_INDEX`` sets the rows per index; ``AMOUNT_AS=str``
writes amounts as strings (the contract-violation example declares them so).
"""

from __future__ import annotations

import os
import sys

from airflow_provider_kbatch import runtime
from airflow_provider_kbatch.examples.orders import ORDERS_PER_INDEX, make_order, order_id


def main() -> int:
    index = runtime.index()
    per_index = int(os.environ.get("ORDERS_PER_INDEX", ORDERS_PER_INDEX))
    amount_as = os.environ.get("AMOUNT_AS", "int")
    rows = [make_order(order_id(index, j), amount_as=amount_as) for j in range(per_index)]
    with runtime.OutputWriter() as out:
        entry = out.write_jsonl(f"orders-{index:05d}.jsonl", rows)
    runtime.emit_result({"index": index, "records": entry["records"], "bytes": entry["size"]})
    runtime.log("ingested", index=index, records=entry["records"], path=entry["path"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
