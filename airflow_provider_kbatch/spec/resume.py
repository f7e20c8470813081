"""Resume: how a pod of a (resumed) Job learns its logical index, and the index map checked.

How a pod learns its logical index (docs/internals.md, "Resume"):

- first attempt (no ``index_map``, or the full range): ``JOB_COMPLETION_INDEX`` is declared from
  the pod annotation, then ``KBATCH_INDEX=$(JOB_COMPLETION_INDEX)`` (dependent expansion: the
  Job controller's own ``JOB_COMPLETION_INDEX`` would be appended *after* our variables, too late
  for the expansion, so we declare it first);
- resumed attempt (a subset of the logical indexes): ``completions = len(index_map)``,
  ``KBATCH_INDEX_MAP=<index_map>``, and every container with a ``command`` runs through a POSIX
  ``sh`` shim that computes ``KBATCH_INDEX`` then ``exec``s the original command and args.
  Containers without a ``command`` (image entrypoint) rely on ``runtime.index()``.

:func:`checked_resume_map` checks the ``index_map`` given to
:func:`~airflow_provider_kbatch.spec.manifest.build_job_manifest`; :func:`kbatch_env` and
:func:`wrap_command` are what the builder puts into every container.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_kbatch.runtime import env as runtime_env
from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import JOB_COMPLETION_INDEX_KEY, JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec

# the names are the runtime's (runtime/env.py), the one definition of every KBATCH_* variable
ENV_STAGE = runtime_env.STAGE
ENV_RUN_ID = runtime_env.RUN_ID
ENV_INDEX = runtime_env.INDEX
ENV_INDEX_MAP = runtime_env.INDEX_MAP
ENV_COMPLETION_INDEX = runtime_env.JOB_COMPLETION_INDEX

#: Exit code of the resume shim when its environment is inconsistent (a kbatch bug, not yours).
SHIM_EXIT_CODE = 121
SHIM_ARGV0 = "kbatch-index-shim"
#: An env var value is limited to 128 KiB by Linux and annotations to 256 KiB in total.
MAX_INDEX_MAP_CHARS = 100_000

# POSIX sh; no "$$" and no "$(NAME)" so the kubelet's $(VAR) expansion of `command` leaves it
# unchanged ("$((" arithmetic is not a variable reference). Ranges are split with IFS=",", one
# pass, no subshells: fast even for a map of thousands of ranges.
RESUME_SHIM = f"""set -f
k=${{{ENV_COMPLETION_INDEX}:-}}
case $k in ''|*[!0-9]*) echo "kbatch: {ENV_COMPLETION_INDEX}='$k' is not an index" >&2; exit {SHIM_EXIT_CODE};; esac
case ${{{ENV_INDEX_MAP}:-}} in ''|*[!0-9,-]*|[,-]*|*[,-]|*,,*|*--*|*,-*|*-,*)
  echo "kbatch: {ENV_INDEX_MAP}='${{{ENV_INDEX_MAP}:-}}' is malformed" >&2; exit {SHIM_EXIT_CODE};; esac
IFS=,
for r in ${{{ENV_INDEX_MAP}:-}}; do
  case $r in *[!0-9-]*|-*|*-|*-*-*) echo "kbatch: bad range '$r' in {ENV_INDEX_MAP}" >&2; exit {SHIM_EXIT_CODE};; esac
  a=${{r%-*}}
  b=${{r#*-}}
  n=$((b - a + 1))
  if [ "$k" -lt "$n" ]; then
    {ENV_INDEX}=$((a + k))
    export {ENV_INDEX}
    unset IFS
    set +f
    exec "$@"
  fi
  k=$((k - n))
done
echo "kbatch: {ENV_COMPLETION_INDEX}=${{{ENV_COMPLETION_INDEX}:-}} is outside {ENV_INDEX_MAP}=${{{ENV_INDEX_MAP}:-}}" >&2
exit {SHIM_EXIT_CODE}
"""


def _completion_index_env() -> dict[str, Any]:
    path = f"metadata.annotations['{JOB_COMPLETION_INDEX_KEY}']"
    return {"name": ENV_COMPLETION_INDEX, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def kbatch_env(spec: StageSpec, identity: JobIdentity, resume_map: IndexSet | None) -> list[dict[str, Any]]:
    """The variables kbatch sets in every container, in dependency order."""
    env = [{"name": ENV_STAGE, "value": identity.task_id}, {"name": ENV_RUN_ID, "value": identity.run_id}]
    if not spec.is_indexed:
        return env
    env.append(_completion_index_env())
    if resume_map is None:
        env.append({"name": ENV_INDEX, "value": f"$({ENV_COMPLETION_INDEX})"})
    else:
        env.append({"name": ENV_INDEX_MAP, "value": str(resume_map)})
    return env


def wrap_command(command: Sequence[str], args: Sequence[str] | None) -> list[str]:
    """The resumed container's ``command``: the shim, then the original command and args."""
    return ["/bin/sh", "-c", RESUME_SHIM, SHIM_ARGV0, *command, *(args or ())]


def checked_resume_map(spec: StageSpec, index_map: IndexSet | None) -> IndexSet | None:
    """The index map when the Job runs a strict subset of the logical indexes, else None."""
    if index_map is None:
        return None
    field = "index_map"
    if not isinstance(index_map, IndexSet):
        raise KbatchSpecError(
            field, f"must be an IndexSet, got {type(index_map).__name__}", "Pass IndexSet.parse('...')."
        )
    if not spec.is_indexed:
        raise KbatchSpecError(
            field, "only works with completion_mode='Indexed'", "Resume NonIndexed stages in full."
        )
    if not index_map:
        raise KbatchSpecError(field, "is empty: there is nothing to run", "Skip the submission instead.")
    outside = index_map - IndexSet.full(spec.completions)
    if outside:
        raise KbatchSpecError(
            field, f"indexes {outside} are not below completions ({spec.completions})", "Pass a subset."
        )
    text = str(index_map)
    if len(text) > MAX_INDEX_MAP_CHARS:
        raise KbatchSpecError(
            field,
            f"is {len(text)} characters long, more than {MAX_INDEX_MAP_CHARS}: too fragmented to pass to the pods",
            "Re-run the stage in full (clear the recorded progress) or in several smaller stages.",
        )
    return None if index_map == IndexSet.full(spec.completions) else index_map
