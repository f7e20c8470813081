"""Deterministic names, labels and annotations for the Jobs of a task instance.

A Job name is a pure function of the task instance (dag, task, run, map index) and its attempt
generation, so a retry or a restarted worker finds the Job it created before. Label values are
sanitised and, whenever sanitising changed or shortened them, get a hash of the original value
appended, so two different values never share a label value (``ETL`` and ``etl`` differ). The
full, unmodified values live in annotations: check them (:func:`identity_from_annotations`)
before adopting a Job found by name or selector.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "airflow-provider-kbatch"
LABEL_DAG_ID = "kbatch.io/dag-id"
LABEL_TASK_ID = "kbatch.io/task-id"
LABEL_RUN_KEY = "kbatch.io/run-key"
LABEL_MAP_INDEX = "kbatch.io/map-index"
LABEL_ATTEMPT = "kbatch.io/attempt"
LABEL_QUEUE_NAME = "kueue.x-k8s.io/queue-name"

ANNOTATION_DAG_ID = "kbatch.io/dag-id"
ANNOTATION_TASK_ID = "kbatch.io/task-id"
ANNOTATION_RUN_ID = "kbatch.io/run-id"
ANNOTATION_MAP_INDEX = "kbatch.io/map-index"
ANNOTATION_TRY_NUMBER = "kbatch.io/try-number"
ANNOTATION_SPEC_HASH = "kbatch.io/spec-hash"
ANNOTATION_INDEX_MAP = "kbatch.io/index-map"

#: Label (1.28+) and annotation set by the Job controller on every pod of an Indexed Job.
JOB_COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"
#: Label the Job controller puts on every pod of a Job: the Job's uid (its pods' selector).
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"

#: Label keys this module owns; user labels may not set them.
RESERVED_LABELS = frozenset(
    {LABEL_MANAGED_BY, LABEL_DAG_ID, LABEL_TASK_ID, LABEL_RUN_KEY, LABEL_MAP_INDEX, LABEL_ATTEMPT}
)
#: Annotation keys this module (and the manifest builder) owns.
RESERVED_ANNOTATIONS = frozenset(
    {
        ANNOTATION_DAG_ID,
        ANNOTATION_TASK_ID,
        ANNOTATION_RUN_ID,
        ANNOTATION_MAP_INDEX,
        ANNOTATION_TRY_NUMBER,
        ANNOTATION_SPEC_HASH,
        ANNOTATION_INDEX_MAP,
    }
)

MAX_JOB_NAME = 52  # Indexed pod hostnames append "-<index>" and must stay a 63-char DNS label
MAX_LABEL_VALUE = 63
NO_MAP_INDEX = "none"

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_NOT_LABEL_CHAR = re.compile(r"[^a-z0-9._-]+")
_NOT_DNS_CHAR = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class JobIdentity:
    """The Airflow task instance a Job belongs to."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1


# --------------------------------------------------------------------------- validity checks


def is_dns1123_label(value: str) -> bool:
    """``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63 characters (container names, ...)."""
    return len(value) <= 63 and _DNS1123_LABEL.fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    """Lower-case dotted DNS labels, at most 253 characters (object names)."""
    return len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def is_label_value(value: str) -> bool:
    """Empty, or at most 63 alphanumerics, ``-``, ``_``, ``.``, starting and ending alphanumeric."""
    return len(value) <= MAX_LABEL_VALUE and _LABEL_VALUE.fullmatch(value) is not None


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label/annotation key (``[prefix/]name``), or None if it is."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "the prefix before '/' is empty"
    if slash and not is_dns1123_subdomain(prefix):
        return f"the prefix {prefix!r} must be a lower-case DNS subdomain of at most 253 characters"
    if not name:
        return "the name part is empty"
    if len(name) > 63:
        return f"the name part {name!r} is {len(name)} characters long, more than 63"
    if _QUALIFIED_NAME.fullmatch(name) is None:
        return (
            f"the name part {name!r} must consist of alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


# --------------------------------------------------------------------------- hashing, sanitising


def _sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def _dns_slug(value: str) -> str:
    """Lower-case, runs of anything but ``[a-z0-9]`` become one ``-``, no ``-`` at either end."""
    return _NOT_DNS_CHAR.sub("-", value.lower()).strip("-")


def _trim_label(value: str) -> str:
    return value.strip("-_.")


def sanitize_label_value(value: str, max_length: int = MAX_LABEL_VALUE) -> str:
    """Turn any string into a valid label value of at most ``max_length`` characters.

    A valid label value matching ``[a-z0-9]([-a-z0-9._]*[a-z0-9])?`` that fits is returned
    unchanged. Otherwise it is lower-cased, invalid characters become ``-``, and an 8-character
    hash of the *original* value is appended (truncating first), so distinct inputs give
    distinct outputs even when sanitising would have merged them.
    """
    if len(value) <= max_length and re.fullmatch(r"[a-z0-9]([-a-z0-9._]*[a-z0-9])?", value):
        return value
    digest = _sha(value)[:8]
    body = _trim_label(_NOT_LABEL_CHAR.sub("-", value.lower()))
    body = _trim_label(body[: max(0, max_length - len(digest) - 1)])
    return f"{body}-{digest}" if body else digest


def run_object_name(kind: str, dag_id: str, run_id: str, *, slug_chars: int, suffix: str = "") -> str:
    """``kbatch-<kind>-<dag slug>-<h10><suffix>``: the name of an object of one DAG run (its ledger,
    its workspace claim), a DNS label; ``h10`` hashes dag id and run id, so runs never share one."""
    slug = _NOT_DNS_CHAR.sub("-", dag_id.lower()).strip("-")[:slug_chars].rstrip("-")
    h10 = _sha(dag_id, run_id)[:10]
    return f"kbatch-{kind}-{slug}-{h10}{suffix}" if slug else f"kbatch-{kind}-{h10}{suffix}"


def run_labels(dag_id: str, run_id: str) -> dict[str, str]:
    """Labels of an object of one DAG run: dag id and run key carry the values its Jobs carry."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_DAG_ID: sanitize_label_value(dag_id),
        LABEL_RUN_KEY: run_key(run_id),
    }


def run_key(run_id: str) -> str:
    """A short DNS-label-safe key for a DAG run: ``<sanitised run id, 20 chars>-<sha256[:8]>``.

    The readable part keeps the start of the run id (``scheduled-2024-01-01``); the hash of the
    full run id keeps a backfill over many dates collision-free.
    """
    digest = _sha(run_id)[:8]
    slug = _dns_slug(run_id)[:20].rstrip("-")
    return f"{slug}-{digest}" if slug else digest


def _map_index_label(map_index: int) -> str:
    return NO_MAP_INDEX if map_index < 0 else str(map_index)


def identity_hash(identity: JobIdentity) -> str:
    """sha256 of ``dag_id\\0task_id\\0run_id\\0map_index`` (hex). Excludes the try number."""
    return _sha(identity.dag_id, identity.task_id, identity.run_id, str(identity.map_index))


def job_name(identity: JobIdentity, generation: int) -> str:
    """``kb-<slug>-<h10>-g<generation>``: deterministic, a DNS-1123 label of at most 52 chars.

    ``slug`` is the sanitised, truncated ``dag_id-task_id`` (for humans); ``h10`` is the first 10
    hex characters of :func:`identity_hash` (for uniqueness across runs and map indexes).
    """
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise ValueError(f"generation must be a non-negative int, got {generation!r}")
    tail = f"-{identity_hash(identity)[:10]}-g{generation}"
    room = MAX_JOB_NAME - len("kb-") - len(tail)
    if room < 1:
        raise ValueError(f"generation {generation} is too large for a job name")
    slug = _dns_slug(f"{identity.dag_id}-{identity.task_id}")[:room].rstrip("-")
    return f"kb-{slug}{tail}" if slug else f"kb{tail}"


# --------------------------------------------------------------------------- labels, annotations


def identity_labels(identity: JobIdentity, generation: int) -> dict[str, str]:
    """The labels put on the Job and its pod template."""
    labels = identity_selector_labels(identity)
    labels[LABEL_ATTEMPT] = str(generation)
    return labels


def identity_selector_labels(identity: JobIdentity) -> dict[str, str]:
    """The labels shared by every generation of a task instance's Jobs."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_DAG_ID: sanitize_label_value(identity.dag_id),
        LABEL_TASK_ID: sanitize_label_value(identity.task_id),
        LABEL_RUN_KEY: run_key(identity.run_id),
        LABEL_MAP_INDEX: _map_index_label(identity.map_index),
    }


def selector_for(identity: JobIdentity) -> str:
    """Label selector (``k=v,k=v``) matching all generations of this task instance's Jobs."""
    return ",".join(f"{k}={v}" for k, v in identity_selector_labels(identity).items())


def identity_annotations(identity: JobIdentity) -> dict[str, str]:
    """Full, unmodified identity values (labels hold sanitised, possibly hashed ones)."""
    return {
        ANNOTATION_DAG_ID: identity.dag_id,
        ANNOTATION_TASK_ID: identity.task_id,
        ANNOTATION_RUN_ID: identity.run_id,
        ANNOTATION_MAP_INDEX: str(identity.map_index),
        ANNOTATION_TRY_NUMBER: str(identity.try_number),
    }


def identity_from_annotations(annotations: Mapping[str, str] | None) -> JobIdentity | None:
    """Read back the identity written by :func:`identity_annotations` (None if incomplete)."""
    if not annotations:
        return None
    try:
        return JobIdentity(
            dag_id=annotations[ANNOTATION_DAG_ID],
            task_id=annotations[ANNOTATION_TASK_ID],
            run_id=annotations[ANNOTATION_RUN_ID],
            map_index=int(annotations[ANNOTATION_MAP_INDEX]),
            try_number=int(annotations.get(ANNOTATION_TRY_NUMBER, "1")),
        )
    except (KeyError, ValueError):
        return None


def same_task_instance(a: JobIdentity | None, b: JobIdentity | None) -> bool:
    """True when both identities name the same task instance (the try number may differ)."""
    if a is None or b is None:
        return False
    return (a.dag_id, a.task_id, a.run_id, a.map_index) == (b.dag_id, b.task_id, b.run_id, b.map_index)
