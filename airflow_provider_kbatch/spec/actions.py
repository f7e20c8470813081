"""The stage options of compensation and memoization (pure): :class:`StageAction` (the
``on_failure=`` Job) and the checks of ``on_failure``, ``cache`` and ``cache_version``.

``on_failure=StageAction(image=..., command=[...], args=[...], env={...}, when="each_try")`` or the
same as a dict (``{"command": [...]}``): a one-pod Job run after a failed try of the stage, with
``KBATCH_FAILED_INDEXES`` and ``KBATCH_QUARANTINE_PATH`` in its environment (see
:mod:`airflow_provider_kbatch.pipeline.compensation`). ``image=None`` runs the stage's image. It
runs under the stage's pod security, service account, node selector, tolerations and priority.

``when``: ``"each_try"`` (default) runs it after every failed try -- each try's side effects are
undone before the retry redoes them (a saga's compensation per step); ``"final"`` only when no
Airflow retry remains (the try number is above the task instance's ``max_tries``, or the failure
is not retryable, e.g. a ``FailJob`` rule). ``KBATCH_FINAL`` tells the action which case it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from airflow_provider_kbatch.spec.errors import KbatchSpecError

When = Literal["each_try", "final"]
WHEN: tuple[When, ...] = ("each_try", "final")
MAX_CACHE_VERSION_CHARS = 63


@dataclass(frozen=True, kw_only=True)
class StageAction:
    """A compensating action: one container, run once as a one-pod Job (``on_failure=``)."""

    command: Sequence[str]
    image: str | None = None  # None: the stage's image
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    when: When = "each_try"
    timeout_seconds: float = 300.0  # how long the failed task waits for it

    def __post_init__(self) -> None:
        for name in ("command", "args"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.env, Mapping):
            object.__setattr__(self, "env", dict(self.env))


_ACTION_FIELDS = tuple(f.name for f in fields(StageAction))


def _strings(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def as_action(value: Any) -> StageAction | None:
    """``on_failure`` as a :class:`StageAction` (a dict is converted); ``None`` stays ``None``.
    Raises :class:`KbatchSpecError` naming ``on_failure`` (or ``on_failure.<field>``)."""
    if value is None:
        return None
    fix = "Pass on_failure=StageAction(command=[...], image=..., env={...}) or a dict of those fields."
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in _ACTION_FIELDS)
        if unknown:
            raise KbatchSpecError("on_failure", f"has no field {', '.join(unknown)}", fix)
        if "command" not in value:
            raise KbatchSpecError("on_failure.command", "is required", "Give the command to run.")
        value = StageAction(**value)
    if not isinstance(value, StageAction):
        raise KbatchSpecError(
            "on_failure", f"must be a StageAction or a dict, got {type(value).__name__}", fix
        )
    problems = action_problems(value)
    if problems:
        raise problems[0]
    return value


def action_problems(action: StageAction) -> list[KbatchSpecError]:
    out: list[KbatchSpecError] = []
    if not _strings(action.command) or not action.command:
        out.append(
            KbatchSpecError(
                "on_failure.command",
                f"must be a non-empty list of strings, got {action.command!r}",
                'Use ["sh", "-c", "<line>"] for a shell line.',
            )
        )
    if not _strings(action.args):
        out.append(KbatchSpecError("on_failure.args", f"must be a list of strings, got {action.args!r}"))
    if action.image is not None and (not isinstance(action.image, str) or not action.image.strip()):
        out.append(
            KbatchSpecError("on_failure.image", f"must be an image name or None, got {action.image!r}")
        )
    if not isinstance(action.env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in action.env.items()
    ):
        out.append(KbatchSpecError("on_failure.env", "must map names to plain strings"))
    if action.when not in WHEN:
        out.append(
            KbatchSpecError("on_failure.when", f"expected one of {', '.join(WHEN)}, got {action.when!r}")
        )
    timeout = action.timeout_seconds
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        out.append(
            KbatchSpecError("on_failure.timeout_seconds", f"must be a positive number, got {timeout!r}")
        )
    return out


def cache_problems(cache: Any, cache_version: Any) -> list[KbatchSpecError]:
    """Problems of ``cache`` (a bool) and ``cache_version`` (``None`` or a short string)."""
    out: list[KbatchSpecError] = []
    if not isinstance(cache, bool):
        out.append(KbatchSpecError("cache", f"must be True or False, got {type(cache).__name__} {cache!r}"))
    if cache_version is not None:
        if not isinstance(cache_version, str) or not cache_version.strip():
            out.append(
                KbatchSpecError(
                    "cache_version",
                    f"must be a non-empty string or None, got {type(cache_version).__name__} {cache_version!r}",
                    'Use a string such as "2": changing it misses every earlier cache entry.',
                )
            )
        elif len(cache_version) > MAX_CACHE_VERSION_CHARS:
            out.append(
                KbatchSpecError("cache_version", f"is longer than {MAX_CACHE_VERSION_CHARS} characters")
            )
        if cache is False:
            out.append(KbatchSpecError("cache_version", "is given but cache is False", "Set cache=True."))
    return out
