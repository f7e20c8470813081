"""The stage's PodDisruptionBudget, created through the hook right after its Job is created or
adopted (the rules, and why the budget becomes an integer ``minAvailable``, are in
:mod:`airflow_provider_kbatch.spec.disruption`).

Idempotent: a PDB of that name owned by this Job (same uid) is kept. One left by an earlier Job
of the same name (another uid: that Job was deleted and this one created under its name before
the garbage collector removed the old PDB) is waited for -- the collector deletes it within
seconds -- and then created for this Job; kbatch never deletes a PDB itself (the Role needs only
``create`` and ``get`` on ``poddisruptionbudgets``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_kbatch.errors import AlreadyExists, KbatchError
from airflow_provider_kbatch.spec.disruption import owned_by, pdb_manifest, pdb_name

log = logging.getLogger(__name__)


def ensure_budget(
    hook: Any,
    namespace: str,
    job: Mapping[str, Any],
    budget: Mapping[str, Any] | None,
    *,
    log: Any = log,
    wait_seconds: float = 60.0,
    sleep: Callable[[float], object] = time.sleep,
) -> dict[str, Any] | None:
    """Create (or keep) the PDB of ``job``; the PDB, or ``None`` without a budget."""
    if budget is None:
        return None
    body = pdb_manifest(job, budget)
    name = pdb_name(job)
    waited = 0.0
    while True:
        try:
            pdb = dict(hook.create_pod_disruption_budget(namespace, body))
        except AlreadyExists:
            existing = hook.get_pod_disruption_budget(namespace, name)
            if existing is not None and owned_by(existing, job):
                return dict(existing)
            if existing is not None and waited >= wait_seconds:
                raise KbatchError(
                    f"pod disruption budget {namespace}/{name} belongs to another object than job "
                    f"{name} (uid {job['metadata']['uid']}) and was not garbage-collected within "
                    f"{wait_seconds:.0f}s; delete it (kubectl delete pdb {name} -n {namespace})"
                ) from None
            if existing is not None:
                log.info(
                    "pod disruption budget %s/%s is an earlier job's: waiting for its removal",
                    namespace,
                    name,
                )
                sleep(1.0)
                waited += 1.0
            continue
        log.info(
            "pod disruption budget %s/%s: minAvailable %s of the job's pods (%s)",
            namespace,
            name,
            body["spec"]["minAvailable"],
            body["metadata"]["annotations"]["kbatch.io/disruption-budget"],
        )
        return pdb
