#!/usr/bin/env bash
# HRPO on the bundled domain: the adaptive warm-up of the supervised tiny model (bundled as
# tiny-streaming-sft; training/tiny/warmup.toml), the main runs and the paper's ablations
# (training/tiny/hrpo_runs.py), the HRPO model copied into the package as the default reasoner
# (tiny-streaming), then every table of RESULTS.md.
#     bash training/tiny/build_hrpo.sh [--jobs 2]
# Needs data/tiny (make_data.sh) and, for the speech rows, data/tiny-speech; an interrupted build
# resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
ADASR=${ADASR:-.venv/bin/adasr-av}
start=$SECONDS
$ADASR train sft --config training/tiny/warmup.toml --no-progress
$PY training/tiny/hrpo_runs.py "$@"
dest=adasr_av/models/tiny-streaming
$PY -m adasr_av.training.export runs/tiny-hrpo/final "$dest"
$PY training/tiny/results.py
echo "HRPO model bundled in $dest; results in training/tiny/RESULTS.md; $(( (SECONDS - start) / 60 )) min"
