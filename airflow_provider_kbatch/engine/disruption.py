"""The stage's PodDisruptionBudget, created through the hook right after its Job is created or
adopted (the rules, and why the budget becomes an integer ``minAvailable``, are in
:mod:`airflow_provider_kbatch.spec.disruption`).

Idempotent: a PDB of that name owned by this Job (same uid) is kept; one left by an earlier Job
of the same name (another uid: the Job was deleted and recreated before the garbage collector
removed its PDB) is deleted and created again for this Job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow_provider_kbatch.errors import AlreadyExists
from airflow_provider_kbatch.spec.disruption import owned_by, pdb_manifest, pdb_name

log = logging.getLogger(__name__)


def ensure_budget(
    hook: Any,
    namespace: str,
    job: Mapping[str, Any],
    budget: Mapping[str, Any] | None,
    *,
    log: Any = log,
) -> dict[str, Any] | None:
    """Create (or keep) the PDB of ``job``; the PDB, or ``None`` without a budget."""
    if budget is None:
        return None
    body = pdb_manifest(job, budget)
    name = pdb_name(job)
    for _ in range(3):
        try:
            pdb = dict(hook.create_pod_disruption_budget(namespace, body))
        except AlreadyExists:
            existing = hook.get_pod_disruption_budget(namespace, name)
            if existing is None:
                continue  # gone again in between: create it
            if owned_by(existing, job):
                return dict(existing)
            log.info("pod disruption budget %s/%s belongs to an earlier job: replacing it", namespace, name)
            hook.delete_pod_disruption_budget(namespace, name)
            continue
        log.info(
            "pod disruption budget %s/%s: minAvailable %s of the job's pods (%s)",
            namespace,
            name,
            body["spec"]["minAvailable"],
            body["metadata"]["annotations"]["kbatch.io/disruption-budget"],
        )
        return pdb
    raise AlreadyExists(409, "AlreadyExists", f"pod disruption budget {namespace}/{name} kept coming back")
