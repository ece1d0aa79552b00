#!/usr/bin/env bash
# Builds Arize Phoenix's virtualenv for `make test-phoenix` (a real OTLP/HTTP collector for tests/telemetry) into
# $PHOENIX_VENV (default .cache/phoenix-venv), once per PHOENIX_VERSION. Phoenix gets a virtualenv of its own: its
# dependencies conflict with semgrep's pins of `mcp` and OpenTelemetry, which our own environment must keep.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PHOENIX_VENV:-.cache/phoenix-venv}
VERSION=${PHOENIX_VERSION:-20.26.1}
STAMP=$VENV/.installed
PYTHON=${PYTHON:-python3}
[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$VERSION" ] && exit 0
rm -rf "$VENV"
$PYTHON -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "arize-phoenix==$VERSION"
"$VENV/bin/phoenix" --help >/dev/null
echo "$VERSION" > "$STAMP"
