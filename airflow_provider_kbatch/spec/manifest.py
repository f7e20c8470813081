"""Render a :class:`StageSpec` into a ``batch/v1`` Job manifest (a camelCase dict).

The ``job_template`` is merged *underneath* the typed fields (typed fields win), see
:func:`deep_merge`. Every container gets the kbatch environment (``KBATCH_STAGE``,
``KBATCH_RUN_ID`` and the index variables); the main container also gets ``extra_env`` and the
extra volume mounts.

How a pod learns its logical index, first attempt or resumed, is
:mod:`airflow_provider_kbatch.spec.resume` (docs/internals.md, "Resume"); its names are
re-exported here.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_kbatch.spec.checkbase import dig
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import (
    ANNOTATION_INDEX_MAP,
    ANNOTATION_SPEC_HASH,
    LABEL_QUEUE_NAME,
    JobIdentity,
    identity_annotations,
    identity_labels,
    job_name,
)
from airflow_provider_kbatch.spec.pod_failure_policy import compile_pod_failure_policy
from airflow_provider_kbatch.spec.resume import (
    ENV_COMPLETION_INDEX,
    ENV_INDEX,
    ENV_INDEX_MAP,
    ENV_RUN_ID,
    ENV_STAGE,
    MAX_INDEX_MAP_CHARS,
    RESUME_SHIM,
    SHIM_ARGV0,
    SHIM_EXIT_CODE,
    checked_resume_map,
    kbatch_env,
    wrap_command,
)
from airflow_provider_kbatch.spec.stage import (
    ConfigMapEnvSource,
    EnvFromConfigMap,
    EnvFromField,
    EnvFromSecret,
    EnvValue,
    Resources,
    SecretEnvSource,
    StageSpec,
)
from airflow_provider_kbatch.spec.success_policy import compile_success_policy
from airflow_provider_kbatch.spec.validation import validate_stage

__all__ = [
    "DEFAULT_CONTAINER_ANNOTATION",
    "ENV_COMPLETION_INDEX",
    "ENV_INDEX",
    "ENV_INDEX_MAP",
    "ENV_RUN_ID",
    "ENV_STAGE",
    "MAX_INDEX_MAP_CHARS",
    "RESUME_SHIM",
    "SHIM_ARGV0",
    "SHIM_EXIT_CODE",
    "build_job_manifest",
    "canonical_json",
    "deep_merge",
    "env_from_item",
    "env_var",
    "kbatch_env",
    "spec_hash",
    "wrap_command",
]

#: Makes ``kubectl logs <pod>`` pick the main container of a pod with sidecars.
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# lists merged item by item, matched on a key: deep-merged items / replaced items
_MERGE_ITEMS_BY = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name"}
_REPLACE_ITEMS_BY = {
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


# --------------------------------------------------------------------------- deep_merge


def deep_merge(base: Any, override: Any) -> Any:
    """Merge ``override`` on top of ``base`` and return a new object (inputs are not changed).

    - mappings merge key by key, recursively; ``override`` wins on leaves;
    - ``containers`` / ``initContainers`` / ``ephemeralContainers`` merge item by item on
      ``name`` (matching items deep-merged, new ones appended in order);
    - ``env``, ``volumes``, ``imagePullSecrets`` (on ``name``) and ``volumeMounts`` (on
      ``mountPath``) merge item by item, a matching item being *replaced* whole (an env var
      with ``value`` in the template and ``valueFrom`` on top must not keep both);
    - any other list is replaced.
    """
    return _merge(base, override, None)


def _merge(base: Any, override: Any, key: str | None) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for k, v in override.items():
            out[k] = _merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(override, list) and key is not None:
        if key in _MERGE_ITEMS_BY:
            return _merge_items(base, override, _MERGE_ITEMS_BY[key], deep=True)
        if key in _REPLACE_ITEMS_BY:
            return _merge_items(base, override, _REPLACE_ITEMS_BY[key], deep=False)
    return copy.deepcopy(override)


def _merge_items(base: list[Any], override: list[Any], field: str, *, deep: bool) -> list[Any]:
    if not all(isinstance(i, Mapping) and field in i for i in [*base, *override]):
        return copy.deepcopy(override)
    out = [copy.deepcopy(i) for i in base]
    position = {item[field]: n for n, item in enumerate(out)}
    for item in override:
        n = position.get(item[field])
        if n is None:
            position[item[field]] = len(out)
            out.append(copy.deepcopy(item))
        else:
            out[n] = _merge(out[n], item, None) if deep else copy.deepcopy(item)
    return out


# --------------------------------------------------------------------------- env rendering


def env_var(name: str, value: EnvValue) -> dict[str, Any]:
    """One ``env`` item; secret and ConfigMap values stay references."""
    if isinstance(value, EnvFromSecret):
        return {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": value.name, "key": value.key, "optional": value.optional}},
        }
    if isinstance(value, EnvFromConfigMap):
        return {
            "name": name,
            "valueFrom": {
                "configMapKeyRef": {"name": value.name, "key": value.key, "optional": value.optional}
            },
        }
    if isinstance(value, EnvFromField):
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": value.field_path}}}
    return {"name": name, "value": value}


def env_from_item(source: SecretEnvSource | ConfigMapEnvSource) -> dict[str, Any]:
    key = "secretRef" if isinstance(source, SecretEnvSource) else "configMapRef"
    item: dict[str, Any] = {key: {"name": source.name, "optional": source.optional}}
    if source.prefix:
        item["prefix"] = source.prefix
    return item


# --------------------------------------------------------------------------- manifest


def _resources(res: Resources) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("requests", "limits"):
        values = getattr(res, kind)
        if values:
            out[kind] = {k: str(v) for k, v in values.items()}
    return out


def _main_container(
    spec: StageSpec,
    identity: JobIdentity,
    resume_map: IndexSet | None,
    extra_env: Mapping[str, EnvValue],
    mounts: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    # kbatch variables first, so the author's env and extra_env may refer to $(KBATCH_INDEX)
    env = kbatch_env(spec, identity, resume_map)
    env = _merge_items(env, [env_var(k, v) for k, v in spec.env.items()], "name", deep=False)
    env = _merge_items(env, [env_var(k, v) for k, v in extra_env.items()], "name", deep=False)
    container: dict[str, Any] = {"name": spec.container_name, "image": spec.image, "env": env}
    optional = {
        "command": list(spec.command) if spec.command is not None else None,
        "args": list(spec.args) if spec.args is not None else None,
        "envFrom": [env_from_item(s) for s in spec.env_from] or None,
        "resources": _resources(spec.resources) if isinstance(spec.resources, Resources) else None,
        "workingDir": spec.working_dir,
        "imagePullPolicy": spec.image_pull_policy,
        "volumeMounts": _merge_items(
            [dict(m) for m in spec.volume_mounts], [dict(m) for m in mounts], "mountPath", deep=False
        )
        or None,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    container.update({k: v for k, v in optional.items() if v is not None})
    return container


def _pod_spec(spec: StageSpec, main: dict[str, Any], volumes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    restart = dig(spec.job_template, "spec", "template", "spec", "restartPolicy") or "Never"
    pod: dict[str, Any] = {"restartPolicy": restart, "containers": [main]}
    optional: dict[str, Any] = {
        "priorityClassName": spec.priority_class_name,
        "serviceAccountName": spec.service_account_name,
        "nodeSelector": dict(spec.node_selector) or None,
        "tolerations": [dict(t) for t in spec.tolerations] or None,
        "volumes": _merge_items(
            [dict(v) for v in spec.volumes], [dict(v) for v in volumes], "name", deep=False
        )
        or None,
        "imagePullSecrets": [{"name": n} for n in spec.image_pull_secrets] or None,
    }
    if spec.pod_security == "restricted":
        ctx: dict[str, Any] = {
            "runAsNonRoot": True,
            "runAsUser": spec.run_as.user,
            "runAsGroup": spec.run_as.group,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        if spec.run_as.fs_group is not None:
            ctx["fsGroup"] = spec.run_as.fs_group
        optional["securityContext"] = ctx
    pod.update({k: v for k, v in optional.items() if v is not None})
    return pod


def _job_spec(spec: StageSpec, resume_map: IndexSet | None, template: dict[str, Any]) -> dict[str, Any]:
    completions = len(resume_map) if resume_map is not None else spec.completions
    max_failed = spec.max_failed_indexes
    optional: dict[str, Any] = {
        "parallelism": spec.parallelism,
        "backoffLimit": spec.backoff_limit,
        "backoffLimitPerIndex": spec.backoff_limit_per_index,
        "maxFailedIndexes": min(max_failed, completions) if max_failed is not None else None,
        "podFailurePolicy": compile_pod_failure_policy(spec),
        "successPolicy": compile_success_policy(spec, resume_map) if spec.is_indexed else None,
        "podReplacementPolicy": spec.pod_replacement_policy,
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
    }
    job: dict[str, Any] = {
        "completions": completions,
        "completionMode": spec.effective_completion_mode,
        "suspend": spec.effective_suspend,
    }
    job.update({k: v for k, v in optional.items() if v is not None})
    job["template"] = template
    return job


def _finish_containers(
    manifest: dict[str, Any], spec: StageSpec, identity: JobIdentity, resume_map: IndexSet | None
) -> None:
    """Per-container touches that must see the merged template: env for sidecars, the resume
    shim, restricted security contexts, termination messages."""
    pod = manifest["spec"]["template"]["spec"]
    # the main container first: `kubectl logs` and log streaming default to it
    pod["containers"].sort(key=lambda c: c.get("name") != spec.container_name)
    shared_env = kbatch_env(spec, identity, resume_map)
    restricted = spec.pod_security == "restricted"
    for kind in ("initContainers", "containers"):
        for container in pod.get(kind) or []:
            if kind == "containers" and container.get("name") != spec.container_name:
                container["env"] = _merge_items(container.get("env") or [], shared_env, "name", deep=False)
                container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
            if kind == "containers" and resume_map is not None and container.get("command"):
                container["command"] = wrap_command(container["command"], container.pop("args", None))
            if restricted:
                security = {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": True,
                }
                container["securityContext"] = deep_merge(container.get("securityContext") or {}, security)


def build_job_manifest(
    spec: StageSpec,
    identity: JobIdentity,
    *,
    generation: int,
    namespace: str,
    index_map: IndexSet | None = None,
    extra_env: Mapping[str, EnvValue] | None = None,
    extra_labels: Mapping[str, str] | None = None,
    extra_annotations: Mapping[str, str] | None = None,
    volumes: Sequence[Mapping[str, Any]] = (),
    volume_mounts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The Job manifest for ``spec`` run by task instance ``identity`` (attempt ``generation``).

    ``index_map``: the logical indexes this Job runs, in order (Job-local index k runs
    ``index_map.nth(k)``); None or the full range means a first attempt. ``extra_env`` goes to
    the main container after the kbatch variables; ``volumes``/``volume_mounts`` are added to
    the pod / main container (e.g. the PVCs of the stage's inputs and output).

    Validates ``spec`` first (raises :class:`KbatchSpecError`).
    """
    validate_stage(spec)
    resume_map = checked_resume_map(spec, index_map)
    labels = {**spec.labels, **(extra_labels or {}), **identity_labels(identity, generation)}
    annotations = {
        **spec.annotations,
        **(extra_annotations or {}),
        **identity_annotations(identity),
        ANNOTATION_SPEC_HASH: spec_hash(spec),
    }
    if spec.is_indexed:
        annotations[ANNOTATION_INDEX_MAP] = str(
            index_map if index_map is not None else IndexSet.full(spec.completions)
        )
    job_labels = {**labels, LABEL_QUEUE_NAME: spec.queue_name} if spec.queue_name else dict(labels)

    main = _main_container(spec, identity, resume_map, extra_env or {}, volume_mounts)
    template = {
        "metadata": {
            "labels": dict(labels),
            "annotations": {**annotations, DEFAULT_CONTAINER_ANNOTATION: spec.container_name},
        },
        "spec": _pod_spec(spec, main, volumes),
    }
    typed = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(identity, generation),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": annotations,
        },
        "spec": _job_spec(spec, resume_map, template),
    }
    base = {k: v for k, v in (spec.job_template or {}).items() if k != "status"}
    merged = deep_merge(base, typed)
    _finish_containers(merged, spec, identity, resume_map)
    # readable order for the rendered manifest: apiVersion, kind, metadata, spec, then the rest
    ordered = {k: merged[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    return ordered | {k: v for k, v in merged.items() if k not in ordered}


# --------------------------------------------------------------------------- spec hash


def _hash_payload(spec: StageSpec) -> dict[str, Any]:
    return {
        "v": 1,
        "image": spec.image,
        "command": list(spec.command) if spec.command is not None else None,
        "args": list(spec.args) if spec.args is not None else None,
        "env": [env_var(k, v) for k, v in spec.env.items()],
        "env_from": [env_from_item(s) for s in spec.env_from],
        "working_dir": spec.working_dir,
        "container_name": spec.container_name,
        "volumes": [dict(v) for v in spec.volumes],
        "volume_mounts": [dict(m) for m in spec.volume_mounts],
        "job_template": spec.job_template,
        "completions": spec.completions,
        "completion_mode": spec.effective_completion_mode,
    }


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, ASCII only, no NaN: the same text on every Python."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_json_default
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set, frozenset)):
        return sorted(obj) if isinstance(obj, (set, frozenset)) else list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def spec_hash(spec: StageSpec) -> str:
    """sha256 (hex) of what determines the *work* of a stage.

    Included: image, command, args, env (references, not secret values), env_from, working_dir,
    container_name, volumes, volume_mounts, job_template, completions, completion mode. Not
    included (they change how or when the work runs, not what it computes, so completed indexes
    stay valid across them): parallelism, resources, retry and failure/success policies,
    deadlines, ttl, suspend, priority, queue, scheduling, labels and annotations.
    """
    return hashlib.sha256(canonical_json(_hash_payload(spec)).encode("ascii")).hexdigest()
