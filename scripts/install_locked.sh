#!/usr/bin/env bash
# Installs the project into a virtualenv: exactly the locked versions (default), or the newest that pyproject.toml's
# ranges allow (LOCKED=0, for `make test-latest`).
#   scripts/install_locked.sh VENV [LOCK] [EXTRAS]
# Env: LOCKED=1|0, TORCH=cpu|cuda (cpu: the locked torch, a CPU build; cuda: the locked lines less torch, then torch
# of the locked version from the default index, which is a CUDA build on Linux), PIP_VERSION, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$1
LOCK=${2:-requirements.lock}
EXTRAS=${3:-dev}
PYTHON=${PYTHON:-python3}
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q "pip==${PIP_VERSION:-26.3}"
if [ "${LOCKED:-1}" = 0 ]; then
    "$PY" -m pip install -q --upgrade --upgrade-strategy eager -e ".[$EXTRAS]"
    exit 0
fi
locked=$LOCK
if [ "${TORCH:-cpu}" = cuda ]; then
    locked=$(mktemp)
    trap 'rm -f "$locked"' EXIT
    torch_version=$(awk -F'[=+ ]+' '/^torch==/ {print $2}' "$LOCK")
    # drop the torch entry (its line and the hash/comment lines under it)
    awk '/^torch==/ {skip = 1; next} skip && /^[ \t]/ {next} {skip = 0; print}' "$LOCK" > "$locked"
fi
# Every package pinned and hash-checked; --no-deps: the lock is complete, so nothing unlocked slips in.
"$PY" -m pip install -q --require-hashes --no-deps -r "$locked"
if [ "${TORCH:-cpu}" = cuda ]; then
    "$PY" -m pip install -q "torch==$torch_version"
fi
# The project itself, with the locked setuptools (no isolated build environment fetching the newest one).
"$PY" -m pip install -q --no-deps --no-build-isolation -e .
"$PY" -m pip check
