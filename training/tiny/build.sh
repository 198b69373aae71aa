#!/usr/bin/env bash
# Build the supervised streaming reasoner from scratch: stories -> BPE tokenizer + Qwen3 model ->
# the package (adasr_av/models/tiny-streaming-sft, 16-bit shards). One command, from anywhere,
# with the project installed:
#     bash training/tiny/build.sh                 # 2 CPU cores, about 150 min run alone
#     bash training/tiny/build.sh --device cuda   # one GPU: more stories in larger batches
# Data and runs go to data/ and runs/ (git-ignored); an interrupted build resumes from its last
# checkpoint (every 50 steps). build_hrpo.sh then makes the warm-up and HRPO models.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADASR=${ADASR:-.venv/bin/adasr-av}
PY=${PY:-.venv/bin/python}
device=cpu
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        *) echo "build.sh: unknown option $1 (--device cpu|cuda)" >&2; exit 2 ;;
    esac
done
sized=()
case "$device" in
    cpu) ;;
    # About 10 minutes on one H200-class GPU (not measured: no GPU was lent when this was sized):
    # four times the batch at twice the learning rate, 3.5 epochs of both wordings.
    cuda) sized=(--set train.output='"runs/tiny-sft-cuda"' --set train.batch_size=64 --set train.lr=2e-3
                 --set train.max_steps=4400 --set train.warmup_steps=100 --set train.save_every=200) ;;
    *) echo "build.sh: --device must be cpu or cuda, got $device" >&2; exit 2 ;;
esac
start=$SECONDS
source training/tiny/make_data.sh
$ADASR train sft --config training/tiny/sft.toml "${sized[@]}"
run=runs/tiny-sft
[ "$device" = cuda ] && run=runs/tiny-sft-cuda
$PY -m adasr_av.training.export "$run/final" adasr_av/models/tiny-streaming-sft
echo "supervised model bundled in adasr_av/models/tiny-streaming-sft in $(( (SECONDS - start) / 60 )) min"
