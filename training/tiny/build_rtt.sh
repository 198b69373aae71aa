#!/usr/bin/env bash
# Build the read-then-think baseline: same size, same stories, every state update after the stream
# ends. It stays in runs/tiny17-rtt-low/final (not shipped); RESULTS.md compares it with the bundled model.
#     bash training/tiny/build_rtt.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ADASR=${ADASR:-.venv/bin/adasr-av}
start=$SECONDS
source training/tiny/make_data.sh
$ADASR train sft --config training/tiny/rtt.toml      # 1,000 cosine steps
$ADASR train sft --config training/tiny/rtt-low.toml  # on at lr 5e-5 until validation stops improving
echo "read-then-think model in runs/tiny17-rtt-low/final in $(( (SECONDS - start) / 60 )) min"
