"""kbatch's in-container helper: standard library only (no Airflow, no Kubernetes client).

Everything a stage program needs from the environment the operator sets::

    from airflow_provider_kbatch import runtime

    i = runtime.index()                       # logical index (resume-aware)
    src = runtime.verify_input("raw")         # manifest of input "raw", checksums verified
    with runtime.OutputWriter() as out:       # records files + publishes this index's part
        out.write_jsonl(f"part-{i:05d}.jsonl", rows)
    runtime.emit_result({"rows": len(rows)})  # small JSON result for the operator (<= 4096 bytes)
    runtime.log("done", rows=len(rows))       # one structured line on stdout

Traces: ``runtime.trace_context()`` (a W3C carrier of the stage span, empty when tracing is off).
Checkpoints: ``runtime.checkpoint.load() / save() / exists()`` (or :class:`Checkpoint`).
A command line exists too: ``python -m airflow_provider_kbatch.runtime --help``.
"""

from __future__ import annotations

from airflow_provider_kbatch.runtime import checkpoint
from airflow_provider_kbatch.runtime.checkpoint import Checkpoint
from airflow_provider_kbatch.runtime.env import (
    accepted_contract,
    checkpoint_dir,
    image,
    index,
    input_dir,
    input_env_name,
    output_contract,
    output_dir,
    run_id,
    stage,
    try_number,
)
from airflow_provider_kbatch.runtime.errors import (
    ConfigError,
    ContractViolation,
    InputVerificationError,
    KbatchRuntimeError,
    ManifestError,
)
from airflow_provider_kbatch.runtime.inputs import verify_input
from airflow_provider_kbatch.runtime.logs import log
from airflow_provider_kbatch.runtime.manifest import manifest_digest
from airflow_provider_kbatch.runtime.outputs import OutputWriter, finalize_manifest
from airflow_provider_kbatch.runtime.results import emit_result
from airflow_provider_kbatch.runtime.schema import contract_errors, validate_records
from airflow_provider_kbatch.runtime.tracing import trace_context, trace_id, traceparent

__all__ = [
    "Checkpoint",
    "ConfigError",
    "ContractViolation",
    "InputVerificationError",
    "KbatchRuntimeError",
    "ManifestError",
    "OutputWriter",
    "accepted_contract",
    "checkpoint",
    "checkpoint_dir",
    "contract_errors",
    "emit_result",
    "finalize_manifest",
    "image",
    "index",
    "input_dir",
    "input_env_name",
    "log",
    "manifest_digest",
    "output_contract",
    "output_dir",
    "run_id",
    "stage",
    "trace_context",
    "trace_id",
    "traceparent",
    "try_number",
    "validate_records",
    "verify_input",
]
