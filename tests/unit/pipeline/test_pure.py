"""pipeline/ is pure: importing it loads neither Airflow nor a Kubernetes client."""

from __future__ import annotations

import subprocess
import sys


def test_pipeline_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_kbatch.pipeline.contracts, airflow_provider_kbatch.pipeline.summary\n"
        "import airflow_provider_kbatch.pipeline.records\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'kubernetes', 'kubernetes_asyncio'))\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == ""
