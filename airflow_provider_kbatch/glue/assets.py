"""Stage outputs as Airflow Assets, so data-aware scheduling works on them.

A stage with ``output="<name>"`` declares the Asset ``kbatch://<namespace>/<dag id>/<name>`` as
an outlet. When the namespace is templated (known only at run time), it declares the AssetAlias
``kbatch:<dag id>/<name>`` instead and attaches the concrete Asset to the alias when the stage
succeeds. Either way the asset event carries the output's manifest digest, bytes, records and
contract (``extra``), the same values the run ledger holds.

The first event of such a concrete Asset goes alone (:mod:`airflow_provider_kbatch.engine.first_event`):
Airflow 3.3 creates the Asset with a plain insert when it records the task's success, so two
runs ending into a new namespace at once would both insert it and one would fail.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetAlias

from airflow_provider_kbatch.engine import first_event
from airflow_provider_kbatch.spec.names import JobIdentity


def output_uri(namespace: str, dag_id: str, output: str) -> str:
    return f"kbatch://{namespace}/{dag_id}/{output}"


def output_alias_name(dag_id: str, output: str) -> str:
    return f"kbatch:{dag_id}/{output}"


def output_outlet(namespace: str, dag_id: str, output: str) -> Asset | AssetAlias:
    """The Asset of a stage's output, or an AssetAlias when the namespace is templated."""
    if "{{" in namespace or "{%" in namespace:
        return AssetAlias(name=output_alias_name(dag_id, output))
    return Asset(uri=output_uri(namespace, dag_id, output))


def asset_known(uri: str) -> bool | None:
    """Whether Airflow has the Asset ``uri`` (its name is its URI); None when it cannot tell
    (outside a task process, an error). Asks through the task's supervisor, as the Task SDK's own
    asset lookups do: first for the active Asset; a new one is active only once the scheduler
    activated it, some seconds after the success that created it, so then for an event of it,
    which that success wrote with it (the lookup by name and URI sees inactive Assets too)."""
    try:
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import ErrorResponse, GetAssetByUri, GetAssetEventByAsset

        comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
        if comms is None:
            return None
        active = comms.send(GetAssetByUri(uri=uri))
        if not isinstance(active, ErrorResponse):
            return True
        if active.error != ErrorType.ASSET_NOT_FOUND:
            return None
        events = comms.send(GetAssetEventByAsset(name=uri, uri=uri, limit=1))
    except Exception:  # an Airflow without these messages, a broken channel: cannot tell
        return None
    if isinstance(events, ErrorResponse):
        return None
    return bool(getattr(events, "asset_events", None))


def emit_output_event(
    context: Any, namespace: str, identity: JobIdentity, recorded: Any, *, hook: Any, log: Any
) -> None:
    """Attach the recorded output (a ledger ``StageOutput``) of the task instance ``identity`` to
    its asset event; the first event of a new alias-attached Asset waits its turn (see the
    module)."""
    dag_id = identity.dag_id
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
            first_event.take_turn(
                hook,
                namespace,
                dag_id=dag_id,
                output=recorded.name,
                uri=uri,
                holder=f"{dag_id}/{identity.run_id}/{identity.task_id}[{identity.map_index}]",
                known=lambda: asset_known(uri),
                log=log,
            )
            events[outlet].add(Asset(uri=uri), extra=extra)
        elif isinstance(outlet, Asset) and outlet.uri == uri:
            events[outlet].extra = extra
