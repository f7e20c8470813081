"""Example stage ``checkpointed``: a long index that saves a checkpoint after every item.

Each index works through ``ITEMS`` items (``ITEM_SECONDS`` each). After every item it appends a
line to ``work.log`` in its checkpoint directory (who did the item) and then saves
``{"next", "total"}`` atomically. A pod killed half-way is replaced by the Job controller
(``backoff_limit_per_index``); the new pod loads the checkpoint and continues from ``next``, so the
result's ``resumed_from`` / ``processed`` and the work log show the items it did not redo (at
most the one item in flight when the kill came is done twice). Finally each index writes its
total to the output.
"""

from __future__ import annotations

import json
import os
import sys
import time

from airflow_provider_kbatch import runtime


def work(index: int, item: int) -> int:
    return (index * 100 + item) ** 2


def main() -> int:
    index = runtime.index()
    items = int(os.environ.get("ITEMS", "20"))
    seconds = float(os.environ.get("ITEM_SECONDS", "0.5"))
    who = os.environ.get("POD_NAME", str(os.getpid()))
    progress = runtime.Checkpoint("progress")
    state = progress.load(default={"next": 0, "total": 0})
    start = state["next"]
    runtime.log("start", index=index, resumed_from=start, items=items, pod=who)
    work_log = runtime.checkpoint_dir() / "work.log"
    for item in range(start, items):
        time.sleep(seconds)
        total = state["total"] + work(index, item)
        with open(work_log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"item": item, "pod": who}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        state = {"next": item + 1, "total": total}
        progress.save(state)
        runtime.log("item done", index=index, item=item)
    with runtime.OutputWriter() as out:
        out.write_jsonl(
            f"total-{index:05d}.jsonl", [{"index": index, "items": items, "total": state["total"]}]
        )
    runtime.emit_result(
        {
            "index": index,
            "items": items,
            "resumed_from": start,
            "processed": items - start,
            "total": state["total"],
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
