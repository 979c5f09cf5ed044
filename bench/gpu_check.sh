#!/usr/bin/env bash
# One prepared check for a lent GPU machine, run from the repository root there:
#   bash bench/gpu_check.sh
# Needs the CIFAR-10 archive carried in the ignored folder .device-data/:
#   mkdir -p .device-data && cp ../shared/data/cifar10-jpeg.tar.xz .device-data/
# torch is installed there; optuna/ray/plotly are not, so this exercises the torch
# parts: the trial function (proxy training + latency) for ThreshNet28/79/95 and the
# proxy throughput benchmark. Budget: under 8 minutes. Outputs land in $OUT.
set -euo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT" /tmp/data
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"
tar -xJf .device-data/cifar10-jpeg.tar.xz -C /tmp/data
timeout 330 python3 bench/gpu_check.py --data-dir /tmp/data/cifar10-jpeg \
    --out "$OUT/presets.json" 2>&1 | tee "$OUT/presets.log"
timeout 110 python3 bench/proxy_throughput.py --data-dir /tmp/data/cifar10-jpeg \
    --cache-dir /tmp/threshnet-cache --images 20000 --workers 4 2>&1 | tee "$OUT/throughput.log"
