#!/usr/bin/env bash
# Create (once) the project's virtualenv outside the repository and print its path.
# It is keyed on the dependency list, so a changed pyproject.toml gets a fresh one and a warm
# machine reuses it. The project itself is installed editable (no dependency resolution).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${KBATCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbatch}
python=${PYTHON:-python3}
key=$( (sed -n '/^dependencies = \[/,/^\]/p;/^dev = /p' "$here/pyproject.toml"; "$python" --version) | sha256sum | cut -c1-12)
venv="$cache/venv-$key"
mkdir -p "$cache"
# One creator at a time: a second caller waits for the first instead of deleting its work.
exec 9>"$cache/.venv.lock"
flock 9
if [ ! -x "$venv/bin/airflow" ] || [ ! -f "$venv/.complete" ]; then
  echo "kbatch: creating virtualenv $venv (Airflow 3, Kubernetes clients, test tools; about a minute)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -e "$here[dev]" >&2
  touch "$venv/.complete"
fi
# Always point the editable install at this checkout (CI clones elsewhere).
# (checked from / so that the current directory does not shadow the installed package)
if ! (cd / && "$venv/bin/python" -c "import airflow_provider_kbatch, sys; sys.exit(0 if airflow_provider_kbatch.__file__.startswith('$here/') else 1)") 2>/dev/null; then
  "$venv/bin/pip" install -q --no-deps -e "$here" >&2
fi
flock -u 9
echo "$venv"
