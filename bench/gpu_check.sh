#!/usr/bin/env bash
# The GPU check: the search's trial function and the proxy throughput on one GPU machine.
# Run from the repository root:
#   bash bench/gpu_check.sh CIFAR10_ARCHIVE [OUT_DIR]
# CIFAR10_ARCHIVE  the offline CIFAR-10 archive (cifar10-jpeg.tar.xz, an ImageFolder tree)
# OUT_DIR          where the logs and presets.json go (default: $OUT, else /tmp/gpu-check)
# Needs torch, torchvision and Pillow (optuna and ray are not used): the trial function
# (proxy training + latency) for ThreshNet28/79/95 and the proxy throughput benchmark.
# Takes under 8 minutes.
set -euo pipefail
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: bash bench/gpu_check.sh CIFAR10_ARCHIVE [OUT_DIR] (the archive must exist)" >&2
    exit 2
fi
ARCHIVE=$1
OUT=${2:-${OUT:-/tmp/gpu-check}}
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
mkdir -p "$OUT"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"
tar -xJf "$ARCHIVE" -C "$DATA"
timeout 330 python3 bench/gpu_check.py --data-dir "$DATA/cifar10-jpeg" \
    --out "$OUT/presets.json" 2>&1 | tee "$OUT/presets.log"
timeout 110 python3 bench/proxy_throughput.py --data-dir "$DATA/cifar10-jpeg" \
    --cache-dir /tmp/threshnet-cache --images 20000 --workers 4 2>&1 | tee "$OUT/throughput.log"
