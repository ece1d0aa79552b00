#!/usr/bin/env bash
# Regenerates requirements.lock from pyproject.toml's ranges (the newest versions they allow, resolved by pip's own
# resolver through pip-tools, so the machine's pip configuration - its package sources and the CPU build of torch -
# applies), with every file's sha256. `make lock`; UPGRADE=NAME moves only that package (and what it needs).
#   scripts/lock.sh [OUT] [INPUT] [EXTRA]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-requirements.lock}
INPUT=${2:-pyproject.toml}
EXTRA=${3:-dev}
TOOLS=.cache/lock-venv
PYTHON=${PYTHON:-python3}
test -x "$TOOLS/bin/pip-compile" || { "$PYTHON" -m venv "$TOOLS" && "$TOOLS/bin/python" -m pip install -q \
    "pip==${PIP_VERSION:-26.3}" "pip-tools==7.7.0"; }
export CUSTOM_COMPILE_COMMAND=${COMPILE_COMMAND:-make lock}  # the command the lock's header names
args=(--quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links)
if [ -n "${UPGRADE:-}" ]; then
    args+=(--upgrade-package "$UPGRADE")
else
    args+=(--upgrade)
fi
[ -n "$EXTRA" ] && args+=(--extra "$EXTRA")
"$TOOLS/bin/pip-compile" "${args[@]}" -o "$OUT" "$INPUT" 2> >(grep -v "is ignored: it is neither" >&2)
echo "$OUT: $(grep -c '^[A-Za-z0-9]' "$OUT") packages"
