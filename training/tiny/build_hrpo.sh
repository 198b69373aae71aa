#!/usr/bin/env bash
# The RL research runs of issue 17, from the bundled default (runs/tiny-robust-adaptive/final, made
# by robust-adaptive.toml): seed 0 of every variant, the choice on validation only
# (results.py --stage valid writes training/tiny/choices.json), three seeds of GRPO and of the
# chosen HRPO in both regimes, the read-then-think baseline, and the test tables, read once.
#     bash training/tiny/build_hrpo.sh [--jobs 2]
# Needs data/tiny, data/tiny-fast and data/free (see RESULTS.md); an interrupted build resumes
# where it stopped. Nothing is copied into the package: a model replaces the bundled default only
# by the validation rule in RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
start=$SECONDS
$PY training/tiny/hrpo_runs.py --plan valid "$@"
$PY training/tiny/results.py --stage valid "$@"
read -r hrpo grpo < <($PY -c "import json; c = json.load(open('training/tiny/choices.json')); print(c['hrpo'], c['grpo'])")
$PY training/tiny/hrpo_runs.py --plan seeds --variant "$hrpo" --grpo-variant "$grpo" "$@"
bash training/tiny/build_rtt.sh
$PY training/tiny/results.py --stage test "$@"
echo "tables in training/tiny/RESULTS.md; $(( (SECONDS - start) / 60 )) min"
