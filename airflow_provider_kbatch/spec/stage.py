"""The typed description of one stage (one ``batch/v1`` Job).

:class:`StageSpec` holds every typed field the operator takes; it does no I/O and no validation
(see :func:`airflow_provider_kbatch.spec.validation.validate_stage`, which reports every problem
at once). Lists are stored as tuples and mappings are copied, so a spec does not change behind
its author's back.

Secrets are *referenced* (:class:`EnvFromSecret`, :class:`SecretEnvSource`), never copied into
the spec, the manifest, logs or XCom.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

CompletionMode = Literal["Indexed", "NonIndexed"]
FailAction = Literal["FailJob", "FailIndex"]
PodSecurity = Literal["restricted", "none"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
PodReplacementPolicy = Literal["Failed", "TerminatingOrFailed"]

DEFAULT_TTL_SECONDS_AFTER_FINISHED = 86400
DEFAULT_CONTAINER_NAME = "main"


@dataclass(frozen=True)
class EnvFromSecret:
    """Environment value read from one key of a Secret (``valueFrom.secretKeyRef``)."""

    name: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class EnvFromConfigMap:
    """Environment value read from one key of a ConfigMap (``valueFrom.configMapKeyRef``)."""

    name: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class EnvFromField:
    """Environment value from the downward API (``valueFrom.fieldRef``), e.g. ``metadata.name``."""

    field_path: str


EnvValue = str | EnvFromSecret | EnvFromConfigMap | EnvFromField


@dataclass(frozen=True)
class SecretEnvSource:
    """Every key of a Secret as an environment variable (``envFrom[].secretRef``)."""

    name: str
    prefix: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class ConfigMapEnvSource:
    """Every key of a ConfigMap as an environment variable (``envFrom[].configMapRef``)."""

    name: str
    prefix: str | None = None
    optional: bool = False


EnvSource = SecretEnvSource | ConfigMapEnvSource


@dataclass(frozen=True)
class Resources:
    """Container resources: ``Resources(requests={"cpu": "500m"}, limits={"memory": "1Gi"})``."""

    requests: Mapping[str, str | int | float] = field(default_factory=dict)
    limits: Mapping[str, str | int | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "requests", dict(self.requests or {}))
        object.__setattr__(self, "limits", dict(self.limits or {}))


@dataclass(frozen=True)
class RunAs:
    """User, group and fsGroup of the pod under ``pod_security="restricted"``."""

    user: int = 1000
    group: int = 1000
    fs_group: int | None = 1000


def _tuple(value: Any) -> Any:
    """Lists/tuples become tuples; anything else is kept for validation to report."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _dict(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


_TUPLE_FIELDS = (
    "command",
    "args",
    "env_from",
    "fail_on_exit_codes",
    "tolerations",
    "volumes",
    "volume_mounts",
    "image_pull_secrets",
)
_DICT_FIELDS = ("env", "node_selector", "labels", "annotations")


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """Everything that describes one stage's Job. Keyword-only; every field but ``image`` optional.

    Field names are the operator's argument names; validation messages use them.
    """

    # container
    image: str
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: Mapping[str, EnvValue] = field(default_factory=dict)
    env_from: tuple[EnvSource, ...] = ()
    resources: Resources | Mapping[str, Any] | None = None
    working_dir: str | None = None
    image_pull_policy: PullPolicy | None = None
    image_pull_secrets: tuple[str, ...] = ()
    container_name: str = DEFAULT_CONTAINER_NAME
    volumes: tuple[Mapping[str, Any], ...] = ()
    volume_mounts: tuple[Mapping[str, Any], ...] = ()

    # fan-out
    completions: int = 1
    parallelism: int | None = None
    completion_mode: CompletionMode | None = None  # None: Indexed

    # failure handling
    backoff_limit: int | None = None
    backoff_limit_per_index: int | None = None
    max_failed_indexes: int | None = None
    fail_on_exit_codes: tuple[int, ...] = ()
    fail_on_exit_codes_action: FailAction = "FailJob"
    ignore_disruptions: bool | None = None  # None: True unless pod_failure_policy is given
    pod_failure_policy: Mapping[str, Any] | None = None
    pod_replacement_policy: PodReplacementPolicy | None = None

    # success criteria
    min_success_ratio: float | None = None
    success_indexes: str | None = None
    success_policy: Mapping[str, Any] | None = None

    # lifetime and scheduling
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = DEFAULT_TTL_SECONDS_AFTER_FINISHED
    suspend: bool = False
    priority_class_name: str | None = None
    queue_name: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    service_account_name: str | None = None

    # metadata
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    # security
    pod_security: PodSecurity = "restricted"
    run_as: RunAs = field(default_factory=RunAs)

    # everything else: merged underneath the typed fields (typed fields win)
    job_template: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS:
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        for name in _DICT_FIELDS:
            object.__setattr__(self, name, _dict(getattr(self, name)))
        resources = self.resources
        if isinstance(resources, Mapping) and set(resources) <= {"requests", "limits"}:
            object.__setattr__(
                self,
                "resources",
                Resources(requests=resources.get("requests") or {}, limits=resources.get("limits") or {}),
            )

    # ----------------------------------------------------------------- derived values

    @property
    def effective_completion_mode(self) -> CompletionMode:
        """``completion_mode``, defaulting to Indexed (also for a single completion)."""
        return self.completion_mode or "Indexed"

    @property
    def is_indexed(self) -> bool:
        return self.effective_completion_mode == "Indexed"

    @property
    def effective_ignore_disruptions(self) -> bool:
        """``ignore_disruptions``; unset means True unless a raw ``pod_failure_policy`` is given."""
        if self.ignore_disruptions is None:
            return self.pod_failure_policy is None
        return self.ignore_disruptions

    @property
    def effective_suspend(self) -> bool:
        """A Kueue-queued Job is created suspended; Kueue un-suspends it when admitted."""
        return bool(self.suspend or self.queue_name)

    def replace(self, **changes: Any) -> StageSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)
