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
# The browser tests (tests/test_web.py) drive Debian's chromium through Playwright from PyPI; Playwright's own
# browser download (`playwright install`) is never used. Install chromium when it is missing, loudly.
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian's chromium for the browser tests (apt-get)" >&2
  $SUDO apt-get update || { echo "error: apt-get update failed; chromium is needed by tests/test_web.py" >&2; exit 1; }
  $SUDO apt-get install -y chromium || { echo "error: apt-get install chromium failed; tests/test_web.py needs /usr/bin/chromium" >&2; exit 1; }
fi
export LABEL_STUDIO_BIN="$PWD/.lsvenv/bin/label-studio"
exec .venv/bin/python -m pytest "$@"
