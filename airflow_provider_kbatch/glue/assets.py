"""Stage outputs as Airflow Assets, so data-aware scheduling works on them.

A stage with ``output="<name>"`` declares the Asset ``kbatch://<namespace>/<dag id>/<name>`` as
an outlet. When the namespace is templated (known only at run time), it declares the AssetAlias
``kbatch:<dag id>/<name>`` instead and attaches the concrete Asset to the alias when the stage
succeeds. Either way the asset event carries the output's manifest digest, bytes, records and
contract (``extra``), the same values the run ledger holds.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetAlias


def output_uri(namespace: str, dag_id: str, output: str) -> str:
    return f"kbatch://{namespace}/{dag_id}/{output}"


def output_alias_name(dag_id: str, output: str) -> str:
    return f"kbatch:{dag_id}/{output}"


def output_outlet(namespace: str, dag_id: str, output: str) -> Asset | AssetAlias:
    """The Asset of a stage's output, or an AssetAlias when the namespace is templated."""
    if "{{" in namespace or "{%" in namespace:
        return AssetAlias(name=output_alias_name(dag_id, output))
    return Asset(uri=output_uri(namespace, dag_id, output))


def emit_output_event(context: Any, namespace: str, dag_id: str, recorded: Any) -> None:
    """Attach the recorded output (a ledger ``StageOutput``) to the task's asset event."""
    events = context.get("outlet_events")
    task = context.get("task")
    if events is None or task is None:
        return
    extra = {
        "manifest_digest": recorded.manifest_digest,
        "bytes": recorded.bytes,
        "records": recorded.records,
        "contract": dict(recorded.contract) if recorded.contract else None,
    }
    uri = output_uri(namespace, dag_id, recorded.name)
    alias = output_alias_name(dag_id, recorded.name)
    for outlet in task.outlets:
        if isinstance(outlet, AssetAlias) and outlet.name == alias:
            events[outlet].add(Asset(uri=uri), extra=extra)
        elif isinstance(outlet, Asset) and outlet.uri == uri:
            events[outlet].extra = extra
