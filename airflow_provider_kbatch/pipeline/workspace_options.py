"""A workspace's author-facing options (pure): :class:`Workspace` (which claim, its size, class,
access modes and retention) and :class:`Ports` (what a stage reads and writes), with their
checks. Re-exported by :mod:`airflow_provider_kbatch.pipeline.workspace`, their import path."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_kbatch.pipeline.contracts import Contract, as_contract
from airflow_provider_kbatch.runtime import env as runtime_env
from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.errors import KbatchSpecError, ProblemCollector
from airflow_provider_kbatch.spec.quantity import parse_quantity

Retention = Literal["delete_on_success", "retain"]
RETENTIONS: tuple[Retention, ...] = ("delete_on_success", "retain")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod")

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True, kw_only=True)
class Workspace:
    """Where a run's stages keep their outputs and checkpoints.

    Either ``claim_name`` (an existing PVC; the run uses ``runs/<run key>/`` in it and nothing is
    ever deleted), or ``create=True``: one claim per DAG run with ``storage_class`` (``None``: the
    cluster default), ``size``, ``access_modes`` (fan-out over several nodes needs
    ``ReadWriteMany``) and ``retention`` (``"delete_on_success"``: deleted by
    :class:`~airflow_provider_kbatch.operators.workspace.KbatchWorkspaceCleanupOperator` when the
    run succeeded; ``"retain"``: kept).

    ``prepare_dirs`` adds an init container (image ``init_image``, default the stage's image; it
    needs ``sh`` and ``mkdir``) that creates the stage's directories group-writable before they
    are mounted by sub-path.
    """

    claim_name: str | None = None
    create: bool = False
    storage_class: str | None = None
    size: str = "1Gi"
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    retention: Retention = "delete_on_success"
    prepare_dirs: bool = True
    init_image: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.access_modes, str):
            object.__setattr__(self, "access_modes", (self.access_modes,))
        else:
            object.__setattr__(self, "access_modes", tuple(self.access_modes))
        problems = ProblemCollector()
        if (self.claim_name is None) == (not self.create):
            problems.add(
                "workspace",
                "needs exactly one of claim_name= (an existing claim) or create=True (one claim per run)",
            )
        if self.claim_name is not None and not names.is_dns1123_subdomain(self.claim_name):
            problems.add("workspace.claim_name", f"{self.claim_name!r} is not a valid claim name")
        if self.claim_name is not None and self.storage_class is not None:
            problems.add(
                "workspace.storage_class", "applies to create=True only", "Drop it or use create=True."
            )
        try:
            if parse_quantity(self.size) <= 0:
                problems.add("workspace.size", f"must be positive, got {self.size!r}")
        except (ValueError, TypeError) as err:
            problems.add("workspace.size", f"{self.size!r} is not a quantity ({err})", "Use e.g. '10Gi'.")
        bad = [m for m in self.access_modes if m not in ACCESS_MODES]
        if bad or not self.access_modes:
            problems.add(
                "workspace.access_modes", f"expected some of {', '.join(ACCESS_MODES)}, got {bad or '[]'}"
            )
        if self.retention not in RETENTIONS:
            problems.add(
                "workspace.retention", f"expected one of {', '.join(RETENTIONS)}, got {self.retention!r}"
            )
        problems.raise_if_any()

    @property
    def provisioned(self) -> bool:
        """The provider creates (and may delete) the claim."""
        return self.create


@dataclass(frozen=True)
class Ports:
    """What a stage reads and writes: ``output`` (a name), ``inputs`` (name -> producing task id,
    ``None`` when it is looked up), the contracts, and whether it checkpoints."""

    output: str | None = None
    inputs: Mapping[str, str | None] = field(default_factory=dict)
    produces: Contract | None = None
    accepts: Mapping[str, Contract] = field(default_factory=dict)
    checkpoint: bool = False

    @classmethod
    def build(
        cls,
        *,
        output: str | None = None,
        inputs: Sequence[str] | Mapping[str, str] | None = None,
        produces: Contract | Mapping[str, Any] | None = None,
        accepts: Mapping[str, Contract | Mapping[str, Any]] | None = None,
        checkpoint: bool = False,
    ) -> Ports:
        """Normalise the operator's arguments (``inputs`` as a list of names or a name -> stage map)."""
        if isinstance(inputs, str):
            inputs = [inputs]
        resolved: dict[str, str | None] = (
            dict(inputs.items()) if isinstance(inputs, Mapping) else dict.fromkeys(inputs or ())
        )
        return cls(
            output=output,
            inputs=resolved,
            produces=as_contract(produces) if produces is not None else None,
            accepts={k: as_contract(v) for k, v in (accepts or {}).items()},
            checkpoint=bool(checkpoint),
        )

    @property
    def used(self) -> bool:
        return bool(self.output or self.inputs or self.checkpoint)


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and _NAME.match(name) is not None and ".." not in name


def _input_problems(ports: Ports, problems: ProblemCollector) -> None:
    mangled: dict[str, str] = {}
    for name, stage in ports.inputs.items():
        if not _valid_name(name):
            continue  # reported with the names
        other = mangled.setdefault(runtime_env.input_env_name(name), name)
        if other != name:
            problems.add(
                "inputs",
                f"{other!r} and {name!r} map to the same variable {runtime_env.input_env_name(name)}",
            )
        if stage is not None and (not isinstance(stage, str) or not stage):
            problems.add("inputs", f"input {name!r}: the producing stage must be a task id, got {stage!r}")
    if ports.output is not None and ports.output in ports.inputs:
        problems.add(
            "inputs", f"{ports.output!r} is also this stage's output", "A stage cannot read its own output."
        )
    for name in ports.accepts:
        if name not in ports.inputs:
            problems.add(
                "accepts", f"{name!r} is not one of the inputs ({', '.join(ports.inputs) or 'none'})"
            )


def ports_problems(
    ports: Ports, workspace: Workspace | None, *, map_index: int = -1
) -> list[KbatchSpecError]:
    """Every mistake in a stage's ports, named by the operator argument."""
    problems = ProblemCollector()
    if ports.used and workspace is None:
        problems.add(
            "workspace",
            "output=, inputs= and checkpoint=True need a workspace",
            "Pass workspace=Workspace(...).",
        )
    for arg, name in [("output", ports.output), *(("inputs", n) for n in ports.inputs)]:
        if name is not None and not _valid_name(name):
            problems.add(
                arg,
                f"{name!r} is not a valid output name",
                "Use 1-63 letters, digits, '_', '.' or '-', starting and ending with a letter or digit.",
            )
    _input_problems(ports, problems)
    if ports.produces is not None and ports.output is None:
        problems.add("produces", "a contract needs an output", "Pass output='<name>'.")
    if ports.output is not None and map_index >= 0:
        problems.add(
            "output",
            "every mapped task instance would write the same output",
            "Fan out with completions= (an Indexed Job) instead of mapping the task.",
        )
    return list(problems.errors)
