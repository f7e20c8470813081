"""KbatchJobOperator's arguments, rendered, as one stage: the pure half of the operator.

* :func:`spec_arguments` turns the operator's rendered arguments into :class:`StageSpec` keyword
  arguments *as the user gave them* -- no ``tuple()`` of a string, no ``dict()`` of a list -- so
  validation sees every mistake and names its field. Only a rendered number or flag is converted:
  ``"6"`` for an int field becomes 6 (:func:`~airflow_provider_kbatch.spec.stage.from_rendered`);
  ``"six"`` stays, and validation reports ``completions: must be an int, got str 'six'``.
* :class:`Stage` is what one try of the task carries from rendering through ``execute``: the
  identity, the validated spec, its ports and the spec wired to the workspace, built once.
* :func:`port_asset` is the Asset (or AssetAlias) of an output or an input: outlets and inlets.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetAlias

from airflow_provider_kbatch.glue.assets import output_alias_name, output_outlet
from airflow_provider_kbatch.pipeline.workspace import Ports
from airflow_provider_kbatch.spec.errors import KbatchSpecError, KbatchSpecErrors
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.spec.podchecks import pod_field
from airflow_provider_kbatch.spec.stage import PodOptions, StageSpec, from_rendered, pod_field_names

#: Every StageSpec field: each is an operator parameter of the same name, or a PodOptions field.
SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StageSpec))
POD_FIELDS: tuple[str, ...] = pod_field_names()
#: The StageSpec fields that are KbatchJobOperator parameters of the same name.
JOB_PARAMETERS: tuple[str, ...] = tuple(f for f in SPEC_FIELDS if f not in POD_FIELDS)
#: Parameters whose ``None`` means "none" (the StageSpec default, an empty mapping or list).
_NONE_IS_EMPTY = ("env", "labels", "annotations", "fail_on_exit_codes")
_ROOT = re.compile(r"[a-z_]+")


def _spec_defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(StageSpec):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


SPEC_DEFAULTS: dict[str, Any] = _spec_defaults()


def errors_of(err: KbatchSpecError) -> tuple[KbatchSpecError, ...]:
    return err.errors if isinstance(err, KbatchSpecErrors) else (err,)


def load_template(template: Any) -> Any:
    """A Job template: a mapping as given, or the mapping a YAML/JSON file path holds. Any other
    value is returned unchanged for validation to report."""
    if not isinstance(template, str):
        return template
    import yaml

    path = Path(template)
    fix = "Pass a dict, or the path of a YAML/JSON file holding a Job manifest."
    if not path.is_file():
        raise KbatchSpecError("job_template", f"file {template!r} does not exist", fix)
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise KbatchSpecError("job_template", f"file {template!r} cannot be read: {err}", fix) from None
    if not isinstance(loaded, dict):
        raise KbatchSpecError(
            "job_template", f"{template!r} does not hold a mapping", "Write a Job manifest."
        )
    return loaded


def _pod_options(pod: Any) -> PodOptions:
    if isinstance(pod, PodOptions):
        return pod
    if isinstance(pod, Mapping):
        unknown = sorted(str(k) for k in pod if k not in POD_FIELDS)
        if unknown:
            raise KbatchSpecError(
                "pod",
                f"has no option {', '.join(unknown)}",
                f"Use PodOptions fields: {', '.join(POD_FIELDS)}.",
            )
        return PodOptions(**pod, check=False)
    raise KbatchSpecError(
        "pod", f"must be PodOptions(...), got {type(pod).__name__}", "Pass pod=PodOptions(node_selector=...)."
    )


def spec_arguments(
    values: Mapping[str, Any], *, pod: Any, stage_options: Any, legacy: Mapping[str, Any]
) -> tuple[dict[str, Any], frozenset[str]]:
    """:class:`StageSpec` keyword arguments from the operator's rendered parameters (``values``:
    one per :data:`JOB_PARAMETERS`), its ``pod`` options and the compatibility paths
    (``stage_options=``, pod fields passed as keywords: ``legacy``); and the fields taken from
    ``pod`` (their problems are named ``pod.<field>``).

    Raises :class:`KbatchSpecError` naming every field that cannot become a spec argument (an
    unreadable template file, an unknown option, a field given twice).
    """
    problems: list[KbatchSpecError] = []
    args: dict[str, Any] = {}
    for name in JOB_PARAMETERS:
        value = from_rendered(name, values[name])
        args[name] = SPEC_DEFAULTS[name] if value is None and name in _NONE_IS_EMPTY else value
    try:
        args["job_template"] = load_template(args["job_template"])
    except KbatchSpecError as err:
        problems.append(err)
        args["job_template"] = None
    from_pod: set[str] = set()
    options: PodOptions | None = None
    if pod is not None:
        try:
            options = _pod_options(pod)
        except KbatchSpecError as err:
            problems.append(err)
        else:
            args.update(options.spec_fields())
            from_pod.update(POD_FIELDS)
    extra, extra_problems = _compat_options(stage_options, legacy)
    problems.extend(extra_problems)
    for name, value in extra.items():
        value = from_rendered(name, value)
        given = args.get(name, SPEC_DEFAULTS.get(name))
        if name in args and given != SPEC_DEFAULTS.get(name) and given != value:
            where = f"pod.{name}" if name in from_pod else f"the {name}= parameter"
            problems.append(
                KbatchSpecError(
                    name,
                    f"is given twice: as {where} ({given!r}) and in stage_options or as a keyword ({value!r})",
                    "Pass it once (stage_options is kept for compatibility).",
                )
            )
            continue
        args[name] = value
        from_pod.discard(name)
    if problems:
        raise problems[0] if len(problems) == 1 else KbatchSpecErrors(problems)
    return args, frozenset(from_pod)


def _compat_options(
    stage_options: Any, legacy: Mapping[str, Any]
) -> tuple[dict[str, Any], list[KbatchSpecError]]:
    problems: list[KbatchSpecError] = []
    extra: dict[str, Any] = {}
    if stage_options is not None and not isinstance(stage_options, Mapping):
        problems.append(
            KbatchSpecError(
                "stage_options",
                f"must be a mapping of StageSpec field -> value, got {type(stage_options).__name__}",
                "Pass the fields as parameters (pod=PodOptions(...) for the pod's).",
            )
        )
    elif stage_options is not None:
        for name, value in stage_options.items():
            if name not in SPEC_FIELDS:
                problems.append(
                    KbatchSpecError(
                        f"stage_options[{name!r}]",
                        "is not a StageSpec field",
                        "Use a parameter of KbatchJobOperator or a PodOptions field.",
                    )
                )
            else:
                extra[name] = value
    extra.update(legacy)
    return extra, problems


def named(errors: Iterable[KbatchSpecError], from_pod: frozenset[str]) -> list[KbatchSpecError]:
    """``errors`` with the fields that came from ``pod=`` named as ``pod.<field>``."""
    out = []
    for err in errors:
        root = _ROOT.match(err.field)
        out.append(pod_field(err) if root is not None and root.group() in from_pod else err)
    return out


@dataclass(frozen=True)
class Stage:
    """One try's stage, built from the rendered arguments once and carried through ``execute``."""

    identity: JobIdentity
    spec: StageSpec  # validated; not wired (the engine wires it to the claim it finds or creates)
    ports: Ports
    shown: StageSpec  # wired to the claim a first stage would create: the rendered manifest's spec


def input_names(inputs: Any) -> list[str]:
    """The names of a stage's inputs (``["raw"]`` or ``{"raw": "ingest"}``); values of the wrong
    shape give none here (validation names them at run time)."""
    if isinstance(inputs, Mapping):
        return [n for n in inputs if isinstance(n, str)]
    if isinstance(inputs, (list, tuple)):
        return [n for n in inputs if isinstance(n, str)]
    return []


def port_asset(namespace: str | None, dag_id: str, name: str) -> Asset | AssetAlias:
    """The Asset ``kbatch://<namespace>/<dag id>/<name>`` of an output or input, or the AssetAlias
    ``kbatch:<dag id>/<name>`` when the namespace is known only at run time: templated, or
    ``None`` (the connection's namespace, read at run time: no I/O while the DAG is parsed). The
    stage that produces the output attaches the concrete Asset, in the namespace it ran in, to
    the alias."""
    if namespace is None:
        return AssetAlias(name=output_alias_name(dag_id, name))
    return output_outlet(namespace, dag_id, name)
