"""kbatch's errors: one taxonomy, and the pure mapping from an API server response to them.

Every error kbatch raises on purpose is a :class:`KbatchError`. Its ``final`` flag says whether an
Airflow retry could change the outcome: an invalid stage, a foreign Job holding our deterministic
name, a broken input or workspace are final (the task fails without retries); an API error that
outlasted the retry policy is not. One place at the Airflow edge
(:func:`airflow_provider_kbatch.glue.errors.airflow_errors`) turns them into
``AirflowFailException`` (final) or ``AirflowException`` (retryable).

Every non-transient API error becomes a :class:`KbatchApiError` (or a subclass chosen by status
and ``Status.reason``) whose message is readable on its own: the server's message and, for a 422,
one line per field cause::

    Kubernetes API error 422 (Invalid): Job.batch "kb-x" is invalid
      - spec.completions: Invalid value: -1: must be greater than or equal to 0

Pure: no Kubernetes client, no Airflow. Client exceptions are read by duck typing
(``.status``, ``.reason``, ``.body``, ``.headers``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


class KbatchError(Exception):
    """Base of every error kbatch raises on purpose.

    ``final`` is True when no Airflow retry can change the outcome (the task's arguments, a name
    that is deterministic, a recorded input): the Airflow edge then fails the task without retries.
    """

    final: ClassVar[bool] = False


@dataclass(frozen=True)
class Cause:
    """One ``details.causes[]`` entry of a Kubernetes ``Status``."""

    field: str | None
    message: str
    reason: str | None = None

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class KbatchApiError(KbatchError):
    """A Kubernetes API request failed with a non-transient error (or ran out of retries)."""

    def __init__(
        self,
        status: int | None,
        reason: str | None = None,
        message: str | None = None,
        causes: tuple[Cause, ...] = (),
        *,
        headers: Mapping[str, Any] | Any | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, reason, message, tuple(causes))
        self.status = status
        self.reason = reason
        self.message = message or ""
        self.causes = tuple(causes)
        self.headers = headers
        self.details: Mapping[str, Any] = details or {}

    def __str__(self) -> str:
        head = f"Kubernetes API error {self.status}" + (f" ({self.reason})" if self.reason else "")
        message = self.message
        if self.causes and " is invalid: " in message:
            # The server repeats every cause after "is invalid: "; list them one per line instead.
            message = message.split(": ", 1)[0]
        lines = [f"{head}: {message}" if message else head]
        lines.extend(f"  - {cause}" for cause in self.causes)
        return "\n".join(lines)


class NotFound(KbatchApiError):
    """404."""


class AlreadyExists(KbatchApiError):
    """409 with reason ``AlreadyExists`` (a create of a name that exists)."""


class Conflict(KbatchApiError):
    """409 on an update: the object changed since it was read (stale ``resourceVersion``)."""


class Gone(KbatchApiError):
    """410: the requested ``resourceVersion`` is too old (re-list)."""


class JobAlreadyExists(AlreadyExists):
    """``create_job`` found a Job of that name; ``job`` is the existing Job, read back (camelCase dict).

    The caller decides whether it is ours (labels, ``kbatch.io/spec-hash``) and adopts it.
    """

    def __init__(self, job: dict[str, Any], message: str | None = None) -> None:
        meta = job.get("metadata") or {}
        message = message or (
            f'jobs.batch "{meta.get("name")}" already exists in namespace {meta.get("namespace")} '
            f"(uid {meta.get('uid')})"
        )
        super().__init__(409, "AlreadyExists", message)
        self.args = (job, message)
        self.job = job


class PodLogNotReady(KbatchApiError):
    """400 when reading a pod's log: the container has not started (yet) or is not valid.

    Callers streaming logs treat it as "not yet" and try again later.
    """


class JobDeleted(KbatchError):
    """The watched Job was deleted (DELETED event, or gone when re-listed)."""

    def __init__(self, namespace: str, name: str, last: dict[str, Any] | None = None) -> None:
        super().__init__(namespace, name, last)
        self.namespace = namespace
        self.name = name
        self.last = last

    def __str__(self) -> str:
        return f"Job {self.namespace}/{self.name} was deleted"


def parse_status_body(body: bytes | str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A Kubernetes ``Status`` body as a dict ({} when the body is not JSON)."""
    if body is None:
        return {}
    if isinstance(body, Mapping):
        return dict(body)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
    except ValueError:
        return {"message": body.strip()} if body.strip() else {}
    return parsed if isinstance(parsed, dict) else {}


def _causes(details: Mapping[str, Any]) -> tuple[Cause, ...]:
    causes = []
    for raw in details.get("causes") or ():
        if isinstance(raw, Mapping):
            causes.append(
                Cause(
                    field=raw.get("field") or None,
                    message=str(raw.get("message") or ""),
                    reason=raw.get("reason"),
                )
            )
    return tuple(causes)


def api_error(
    status: int | None,
    reason: str | None = None,
    body: bytes | str | Mapping[str, Any] | None = None,
    headers: Mapping[str, Any] | Any | None = None,
) -> KbatchApiError:
    """Map an HTTP error response (a ``Status`` body, usually) to the matching error class."""
    parsed = parse_status_body(body)
    status = parsed.get("code") if isinstance(parsed.get("code"), int) else status
    k8s_reason = parsed.get("reason") or reason
    message = parsed.get("message") or reason or ""
    details = parsed.get("details") if isinstance(parsed.get("details"), Mapping) else {}
    cls: type[KbatchApiError] = KbatchApiError
    if status == 404:
        cls = NotFound
    elif status == 409:
        cls = AlreadyExists if k8s_reason == "AlreadyExists" else Conflict
    elif status == 410:
        cls = Gone
    return cls(status, k8s_reason, message, _causes(details or {}), headers=headers, details=details)


def from_client_exception(exc: BaseException) -> KbatchApiError:
    """Map a ``kubernetes`` / ``kubernetes_asyncio`` ``ApiException`` (duck-typed) to a KbatchApiError."""
    if isinstance(exc, KbatchApiError):
        return exc
    status = getattr(exc, "status", None)
    return api_error(
        status if isinstance(status, int) else None,
        getattr(exc, "reason", None),
        getattr(exc, "body", None),
        getattr(exc, "headers", None),
    )
