#!/usr/bin/env bash
# Build the bundled streaming reasoner from scratch: stories -> BPE tokenizer + Qwen3 model -> the
# package (adasr_av/models/tiny-streaming). One command, from anywhere, with the project installed:
#     bash training/tiny/build.sh
# Data and runs go to data/ and runs/ (git-ignored); an interrupted build resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADASR=${ADASR:-.venv/bin/adasr-av}
start=$SECONDS
source training/tiny/make_data.sh
$ADASR train sft --config training/tiny/sft.toml
dest=adasr_av/models/tiny-streaming-sft
rm -rf "$dest" && mkdir -p "$dest"
cp runs/tiny-sft/final/{config.json,generation_config.json,model.safetensors,tokenizer.json,tokenizer_config.json} "$dest"/
echo "bundled model written to $dest in $(( (SECONDS - start) / 60 )) min"
