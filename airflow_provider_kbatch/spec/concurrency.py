"""Concurrency across DAG runs (CronJob's ``concurrencyPolicy``), the pure half: the arguments'
checks, the names and labels involved, and the lock's compare-and-swap merge (:func:`take`). Who
blocks whom, and the I/O, are in :mod:`airflow_provider_kbatch.engine.concurrency`.

The scope is one stage of one DAG: the Jobs of the same dag id, task id and map index, in the
namespace, whatever their run (label selector :func:`task_selector`; the run id is read from each
Job's identity annotations, never from the hashed labels).

``Allow`` (default) changes nothing. ``Forbid`` and ``Replace`` also use a *lock*: one small
ConfigMap per stage (:func:`lock_name`) whose ``holder`` names the run that last took it, written
by compare-and-swap, so two runs that look at the same moment cannot both go:

* ``Forbid``: a run may submit when no other run's Job of the stage is active (not finished) and the
  lock is free, its own, or *stale*: its holder's Job finished, or never appeared within
  :data:`HOLDER_GRACE_SECONDS` (the holder died between taking the lock and creating its Job). It
  takes the lock by CAS *from the holder it saw*; losing that race means waiting again.
* ``Replace``: a run takes the lock whatever holds it, then deletes every other run's active Job
  of the stage; after creating its own Job it checks the lock still names it -- if a newer run took
  it meanwhile, that run may not have seen this Job, so this run deletes its own Job. Only the run
  that took the lock last keeps a Job.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.names import (
    LABEL_DAG_ID,
    LABEL_MANAGED_BY,
    LABEL_MAP_INDEX,
    LABEL_TASK_ID,
    MANAGED_BY,
    JobIdentity,
    identity_selector_labels,
    sanitize_label_value,
)

ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]
POLICIES: tuple[str, ...] = ("Allow", "Forbid", "Replace")
LABEL_LOCK = "kbatch.io/concurrency-lock"
HOLDER_KEY = "holder"
#: a lock holder whose Job does not exist is stale after this long (it died before creating it)
HOLDER_GRACE_SECONDS = 120.0
#: seconds between two looks while a Forbid run waits
POLL_SECONDS = 2.0
#: the reason recorded in a replaced run's ledger starts with this
REPLACED = "replaced by run "


# --------------------------------------------------------------------------- arguments


def timeout_seconds(timeout: Any) -> float | None:
    """``concurrency_timeout`` in seconds (a checked value: None, a number or a timedelta)."""
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    return float(timeout)


def concurrency_problems(policy: Any, timeout: Any) -> list[KbatchSpecError]:
    """Every problem of ``concurrency_policy`` and ``concurrency_timeout``."""
    out = []
    if policy not in POLICIES:
        out.append(
            KbatchSpecError(
                "concurrency_policy",
                f"must be one of {', '.join(POLICIES)}, got {policy!r}",
                "Pass concurrency_policy='Allow' (default), 'Forbid' (wait for the other run's Job) "
                "or 'Replace' (delete it).",
            )
        )
    fix = "Pass concurrency_timeout=timedelta(minutes=30) or a number of seconds, or None to wait forever."
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float, datetime.timedelta)):
            out.append(
                KbatchSpecError(
                    "concurrency_timeout",
                    f"must be a timedelta or seconds, got {type(timeout).__name__}",
                    fix,
                )
            )
        else:
            seconds = timeout_seconds(timeout)
            if seconds is None or not math.isfinite(seconds) or seconds <= 0:
                out.append(KbatchSpecError("concurrency_timeout", f"must be positive, got {timeout!r}", fix))
            elif policy != "Forbid":
                out.append(
                    KbatchSpecError(
                        "concurrency_timeout",
                        f"only applies to concurrency_policy='Forbid', not {policy!r}",
                        "Remove concurrency_timeout, or pass concurrency_policy='Forbid'.",
                    )
                )
    return out


# --------------------------------------------------------------------------- names, selectors


def task_selector(identity: JobIdentity) -> str:
    """Label selector of the stage's Jobs in every run (dag id, task id, map index)."""
    labels = identity_selector_labels(identity)
    keys = (LABEL_MANAGED_BY, LABEL_DAG_ID, LABEL_TASK_ID, LABEL_MAP_INDEX)
    return ",".join(f"{k}={labels[k]}" for k in keys)


def lock_name(identity: JobIdentity) -> str:
    """``kbatch-lock-<dag-task slug>-<h10>``: the stage's lock ConfigMap (a DNS label)."""
    digest = hashlib.sha256(
        "\0".join((identity.dag_id, identity.task_id, str(identity.map_index))).encode()
    ).hexdigest()[:10]
    slug = "".join(c if c.isalnum() else "-" for c in f"{identity.dag_id}-{identity.task_id}".lower())
    slug = "-".join(part for part in slug.split("-") if part)[:38].rstrip("-")
    return f"kbatch-lock-{slug}-{digest}" if slug else f"kbatch-lock-{digest}"


def lock_labels(identity: JobIdentity) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_DAG_ID: sanitize_label_value(identity.dag_id),
        LABEL_TASK_ID: sanitize_label_value(identity.task_id),
        LABEL_LOCK: "true",
    }


# --------------------------------------------------------------------------- the lock's holder


@dataclass(frozen=True)
class Holder:
    """The run that took the stage's lock, the Job it was about to create, when (epoch seconds)."""

    run_id: str
    job: str
    at: float

    def dump(self) -> str:
        return json.dumps({"run_id": self.run_id, "job": self.job, "at": self.at}, sort_keys=True)


def holder_of(data: Mapping[str, str] | None) -> Holder | None:
    raw = (data or {}).get(HOLDER_KEY)
    if not raw:
        return None
    try:
        value = json.loads(raw)
        return Holder(str(value["run_id"]), str(value["job"]), float(value["at"]))
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: treated as free


def take(data: dict[str, str], me: Holder, *, only_from: Holder | Literal["any"] | None) -> dict[str, str]:
    """The lock's data with ``me`` as holder when it is free, already ours, or held by
    ``only_from`` (the holder the caller saw was stale); ``only_from="any"`` takes it whatever
    holds it. Unchanged otherwise. Pure (the CAS loop may apply it several times)."""
    current = holder_of(data)
    if (
        only_from == "any"
        or current is None
        or current.run_id == me.run_id
        or (only_from is not None and current == only_from)
    ):
        return {**data, HOLDER_KEY: me.dump()}
    return dict(data)
