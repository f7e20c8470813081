"""The typed description of one stage (one ``batch/v1`` Job).

:class:`StageSpec` holds every typed field the operator takes; it does no I/O and no validation
(see :func:`airflow_provider_kbatch.spec.validation.validate_stage`, which reports every problem
at once). Lists are stored as tuples and mappings are copied, so a spec does not change behind
its author's back.

Secrets are *referenced* (:class:`EnvFromSecret`, :class:`SecretEnvSource`), never copied into
the spec, the manifest, logs or XCom. Over 400 lines on purpose: the dataclasses and their one normalizer stay together.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any, ClassVar, Literal

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
        # mappings are copied; anything else is kept for validation to report (dict() of a list
        # of pairs would hide the mistake, dict() of a string would raise a bare ValueError)
        for kind in ("requests", "limits"):
            value = getattr(self, kind)
            object.__setattr__(self, kind, {} if value is None else _dict(value))


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

    # disruptions (spec/disruption.py): a PodDisruptionBudget owned by the Job, e.g.
    # {"min_available": 2} or {"max_unavailable": "50%"}
    disruption_budget: Mapping[str, Any] | None = None

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


# --------------------------------------------------------------------------- pod options


@dataclass(frozen=True, kw_only=True)
class PodOptions:
    """The pod-template details of a stage, one documented and self-validating group (the
    operator's ``pod=`` argument) instead of a dozen more constructor arguments.

    Every field is the :class:`StageSpec` field of the same name and has its default:

    :param container_name: name of the main container (default ``main``); a ``job_template``
        container of this name is merged into it.
    :param working_dir: the main container's working directory.
    :param image_pull_policy: ``Always``, ``IfNotPresent`` or ``Never``.
    :param image_pull_secrets: names of the Secrets used to pull the image.
    :param env_from: every key of a Secret or ConfigMap as variables
        (:class:`SecretEnvSource`, :class:`ConfigMapEnvSource`).
    :param volumes: pod volumes (camelCase dicts, e.g. ``{"name": "scratch", "emptyDir": {}}``).
    :param volume_mounts: mounts of the main container (``{"name": ..., "mountPath": "/data"}``).
    :param node_selector: node labels the pods must match.
    :param tolerations: pod tolerations (camelCase dicts).
    :param service_account_name: the pods' ServiceAccount.
    :param pod_security: ``restricted`` (default: the restricted Pod Security Standard) or ``none``.
    :param run_as: user, group and fsGroup under ``restricted`` (:class:`RunAs`).
    :param check: validate now (default). Values that hold a Jinja template (``{{ ... }}``) are
        checked after templating instead; the operator checks every value again then.

    Problems raise :class:`~airflow_provider_kbatch.spec.errors.KbatchSpecError` naming the
    field as ``pod.<field>``. The operator renders the string-valued fields (templated).
    """

    container_name: str = DEFAULT_CONTAINER_NAME
    working_dir: str | None = None
    image_pull_policy: PullPolicy | None = None
    image_pull_secrets: tuple[str, ...] = ()
    env_from: tuple[EnvSource, ...] = ()
    volumes: tuple[Mapping[str, Any], ...] = ()
    volume_mounts: tuple[Mapping[str, Any], ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    service_account_name: str | None = None
    pod_security: PodSecurity = "restricted"
    run_as: RunAs = field(default_factory=RunAs)
    check: InitVar[bool] = True

    #: the fields the operator renders with Jinja (the others hold objects)
    templated: ClassVar[tuple[str, ...]] = (
        "container_name",
        "working_dir",
        "image_pull_policy",
        "image_pull_secrets",
        "volumes",
        "volume_mounts",
        "node_selector",
        "tolerations",
        "service_account_name",
        "pod_security",
    )

    def __post_init__(self, check: bool) -> None:
        for name in _TUPLE_FIELDS:
            if name in _POD_FIELD_NAMES:
                object.__setattr__(self, name, _tuple(getattr(self, name)))
        for name in _DICT_FIELDS:
            if name in _POD_FIELD_NAMES:
                object.__setattr__(self, name, _dict(getattr(self, name)))
        if check and not holds_template(self.spec_fields()):
            self.validate()

    def spec_fields(self) -> dict[str, Any]:
        """The options as :class:`StageSpec` keyword arguments."""
        return {name: getattr(self, name) for name in _POD_FIELD_NAMES}

    def rendered(self, render: Callable[[Any], Any]) -> PodOptions:
        """A copy with every templated field passed through ``render`` (not validated: the
        operator validates the whole stage after templating)."""
        changes = {name: render(getattr(self, name)) for name in self.templated}
        return dataclasses.replace(self, check=False, **changes)

    def problems(self) -> list[Any]:
        """Every problem of these options (``KbatchSpecError``, fields named ``pod.<field>``)."""
        from airflow_provider_kbatch.spec.podchecks import pod_options_problems

        return pod_options_problems(self)

    def validate(self) -> None:
        """Raise ``KbatchSpecError`` (one problem) or ``KbatchSpecErrors`` (several)."""
        from airflow_provider_kbatch.spec.errors import ProblemCollector

        collected = ProblemCollector()
        collected.extend(self.problems())
        collected.raise_if_any()


_POD_FIELD_NAMES = (
    "container_name",
    "working_dir",
    "image_pull_policy",
    "image_pull_secrets",
    "env_from",
    "volumes",
    "volume_mounts",
    "node_selector",
    "tolerations",
    "service_account_name",
    "pod_security",
    "run_as",
)


def pod_field_names() -> tuple[str, ...]:
    """The :class:`StageSpec` fields grouped in :class:`PodOptions`."""
    return _POD_FIELD_NAMES


def holds_template(value: Any) -> bool:
    """True when ``value`` (or a string nested in it) holds Jinja markup: known after templating."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(holds_template(k) or holds_template(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(holds_template(v) for v in value)
    return False


# --------------------------------------------------------------------------- rendered values

#: Number and flag fields: Jinja renders ``"{{ params.n }}"`` to the *string* ``"6"`` unless the
#: DAG sets ``render_template_as_native_obj``; :func:`from_rendered` turns such a string back.
INT_FIELDS = frozenset(
    {
        "completions",
        "parallelism",
        "backoff_limit",
        "backoff_limit_per_index",
        "max_failed_indexes",
        "active_deadline_seconds",
        "ttl_seconds_after_finished",
    }
)
FLOAT_FIELDS = frozenset({"min_success_ratio"})
BOOL_FIELDS = frozenset({"suspend", "ignore_disruptions"})
INT_LIST_FIELDS = frozenset({"fail_on_exit_codes"})
_OPTIONAL = frozenset(
    (INT_FIELDS - {"completions"}) | FLOAT_FIELDS | {"ignore_disruptions"}
)  # "None" (a rendered None) means unset
_INT = re.compile(r"[+-]?\d+")
_BOOLS = {"true": True, "false": False}


def from_rendered(name: str, value: Any) -> Any:
    """``value`` of field ``name`` as the template meant it: ``"6"`` -> 6 for an int field,
    ``"0.9"`` -> 0.9 for a ratio, ``"True"`` -> True for a flag, ``"None"`` -> None for an
    optional field, ``["42"]`` -> [42] for exit codes. Anything else is returned unchanged, so
    validation reports it naming the field (``completions: must be an int, got str 'six'``)."""
    if name in INT_LIST_FIELDS and isinstance(value, (list, tuple)):
        return [from_rendered("completions", v) for v in value]
    if not isinstance(value, str):
        return value
    text = value.strip()
    if name in _OPTIONAL and text == "None":
        return None
    if name in INT_FIELDS and _INT.fullmatch(text):
        return int(text)
    if name in FLOAT_FIELDS:
        try:
            number = float(text)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    if name in BOOL_FIELDS and text.lower() in _BOOLS:
        return _BOOLS[text.lower()]
    return value
