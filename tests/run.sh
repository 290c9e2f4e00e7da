#!/usr/bin/env bash
# The test command (README "Set-up 2"): installs policytag and Label Studio into local venvs
# and runs the whole suite. Works on a fresh machine; needs ../shared beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0            # the CPU wheel; never an unpinned torch (CUDA, GBs)
.venv/bin/pip install -q -e '.[test]'
# Label Studio pins Django and its own SDK: it gets its own venv, found by the tests via LABEL_STUDIO_BIN.
[ -x .lsvenv/bin/label-studio ] || { "$PY" -m venv .lsvenv && .lsvenv/bin/pip install -q 'label-studio==1.23.*'; }
export LABEL_STUDIO_BIN="$PWD/.lsvenv/bin/label-studio"
exec .venv/bin/python -m pytest "$@"
