"""Example stage: every index squares its logical index and reports it as its result.

Environment knobs for the failure examples and tests:
``FAIL_INDEXES`` ("1,3") fail those indexes with ``FAIL_EXIT_CODE`` (default 3) while
``KBATCH_TRY_NUMBER`` is at most ``FAIL_UNTIL_TRY`` (default 1); ``SLEEP_SECONDS`` delays each index.
"""

from __future__ import annotations

import os
import sys
import time

from airflow_provider_kbatch import runtime


def main() -> int:
    index = runtime.index()
    runtime.log("start", index=index, stage=runtime.stage())
    time.sleep(float(os.environ.get("SLEEP_SECONDS", "0")))
    failing = {int(i) for i in os.environ.get("FAIL_INDEXES", "").split(",") if i.strip()}
    try_number = runtime.try_number()
    if index in failing and try_number <= int(os.environ.get("FAIL_UNTIL_TRY", "1")):
        runtime.log("failing on purpose", index=index, try_number=try_number)
        return int(os.environ.get("FAIL_EXIT_CODE", "3"))
    runtime.emit_result({"index": index, "square": index * index})
    runtime.log("done", index=index, square=index * index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
