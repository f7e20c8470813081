"""The first Asset event of a new Asset, one run at a time.

A stage whose namespace is known only at run time attaches the concrete Asset
``kbatch://<namespace>/<dag id>/<output>`` to its AssetAlias when it succeeds. Airflow 3.3 creates
that Asset, the first time, with a plain ``INSERT`` while it records the task's success
(``TaskInstance.register_asset_changes_in_db``). Two runs whose stages end at the same moment
into a new namespace (a backfill with ``max_active_runs`` > 1, mapped copies of a stage) both
insert it; the second breaks the unique index ``idx_asset_name_uri_unique``, and Airflow sets
its task to ``failed``, without a retry, after its Job succeeded.

:func:`take_turn` makes the first event of an Asset go alone. Before a stage ends it asks Airflow
whether the Asset exists (``known``, the caller's question); if not, it claims the first event
with a ConfigMap ``kbatch-asset-<dag>-<h10>`` in the namespace (a create: the API server lets
exactly one run make it). The run that made it goes on and creates the Asset with its success;
the others wait, asking again every ``poll`` seconds, until the Asset exists, and then go on:
their events find it. A claim older than ``window`` seconds (its run died before its end, or
the Asset was deleted since) is taken over by compare-and-swap, so again only one run goes
first: a run whose wait ran out (the claim's run failed before its end) tries to take the claim
over so. After ``rounds`` such claims by others the stage ends as it would have without one.

It costs one question to Airflow per stage end with an alias; the claim's requests only while
the Asset does not exist. A claim that cannot be made (RBAC without ConfigMaps, the API down)
costs nothing but a warning: the stage ends as before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Literal

from airflow_provider_kbatch.engine.waiter import Log
from airflow_provider_kbatch.errors import AlreadyExists, Conflict, KbatchApiError
from airflow_provider_kbatch.spec import names

#: What :func:`take_turn` found: the Asset existed; this run claimed the first event; another
#: run's event created the Asset while this one waited; the wait ran out; Airflow or the API
#: could not tell (nothing was coordinated).
Turn = Literal["known", "first", "waited", "timed out", "unknown"]

LABEL_ASSET_CLAIM = "kbatch.io/asset-claim"
WINDOW_SECONDS = 60.0
POLL_SECONDS = 0.5


def claim_name(dag_id: str, output: str) -> str:
    """``kbatch-asset-<dag slug>-<h10>``: h10 hashes the DAG id and the output's name (the
    namespace is the ConfigMap's own)."""
    return names.run_object_name("asset", dag_id, output, slug_chars=38)


def _claim(
    name: str, dag_id: str, uri: str, holder: str, at: float, version: str | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {
            names.LABEL_MANAGED_BY: names.MANAGED_BY,
            names.LABEL_DAG_ID: names.sanitize_label_value(dag_id),
            LABEL_ASSET_CLAIM: "true",
        },
    }
    if version is not None:
        metadata["resourceVersion"] = version
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"claim": json.dumps({"uri": uri, "holder": holder, "at": at}, sort_keys=True)},
    }


def _claim_of(config_map: dict[str, Any] | None) -> tuple[float, str] | None:
    """When and by whom a claim ConfigMap was made; None if it holds no readable claim."""
    try:
        claim = json.loads(((config_map or {}).get("data") or {})["claim"])
        return float(claim["at"]), str(claim["holder"])
    except (KeyError, TypeError, ValueError):
        return None


def take_turn(
    hook: Any,
    namespace: str,
    *,
    dag_id: str,
    output: str,
    uri: str,
    holder: str,
    known: Callable[[], bool | None],
    log: Log,
    window: float = WINDOW_SECONDS,
    poll: float = POLL_SECONDS,
    rounds: int = 3,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Turn:
    """Return once this run's event for ``uri`` cannot race another run's first one.

    ``known()`` is Airflow's answer to "does the Asset exist": True, False, or None (cannot
    tell, for example outside a task process). ``holder`` names the task instance in the claim
    (not its try: a claim of the same task instance is its own, taken over at once).
    """
    exists = known()
    if exists is None:
        return "unknown"
    if exists:
        return "known"
    name = claim_name(dag_id, output)
    for _ in range(rounds):
        try:
            claimed_at = _make_claim(hook, namespace, name, dag_id, uri, holder, now(), window)
        except KbatchApiError as err:
            log.warning("Asset %s: could not claim its first event (ConfigMap %s): %s", uri, name, err)
            return "unknown"
        if claimed_at is None:
            log.info("Asset %s is new: this run's event creates it (claimed in ConfigMap %s)", uri, name)
            return "first"
        log.info("Asset %s is new and another run creates it (ConfigMap %s): waiting for it", uri, name)
        while now() < claimed_at + window:
            sleep(poll)
            if known():
                log.info("Asset %s now exists: this run's event is attached to it", uri)
                return "waited"
        # the claim's run never made it: its claim is stale now, one of the waiters takes it over
    log.warning(
        "Asset %s: still missing after %d claims of %.0f s by other runs; ending anyway", uri, rounds, window
    )
    return "timed out"


def _make_claim(
    hook: Any, namespace: str, name: str, dag_id: str, uri: str, holder: str, at: float, window: float
) -> float | None:
    """None when this run holds the claim; else the time another run claimed it."""
    try:
        hook.create_config_map(namespace, _claim(name, dag_id, uri, holder, at))
        return None
    except AlreadyExists:
        pass
    current = hook.get_config_map(namespace, name)
    if current is None:  # deleted since: try once more, a create again decides
        try:
            hook.create_config_map(namespace, _claim(name, dag_id, uri, holder, at))
            return None
        except AlreadyExists:
            current = hook.get_config_map(namespace, name)
    claim = _claim_of(current)
    if claim is not None and at - claim[0] < window and claim[1] != holder:
        return claim[0]
    # stale, unreadable, or this task instance's own (an earlier try that claimed it and failed
    # before its success): take it over; a concurrent taker's replace wins, this one waits
    version = ((current or {}).get("metadata") or {}).get("resourceVersion")
    try:
        hook.replace_config_map(namespace, _claim(name, dag_id, uri, holder, at, version))
        return None
    except Conflict:
        taken = _claim_of(hook.get_config_map(namespace, name))
        return taken[0] if taken is not None else at
