#!/usr/bin/env bash
# The GPU check: the whole product on one GPU in at most 9 minutes, one summary file.
# Run from the repository root:
#   bash bench/gpu_check.sh CIFAR10_ARCHIVE [WHEELHOUSE] [OUT_DIR] [-- EXTRA...]
# CIFAR10_ARCHIVE  the offline CIFAR-10 archive (cifar10-jpeg.tar.xz, an ImageFolder tree)
# WHEELHOUSE       wheels for optuna and Ray (../shared/gpu/wheelhouse.sh DIR builds them),
#                  installed only if they are missing; "-" for none
# OUT_DIR          logs, summary.md and summary.json (default: $OUT, else /tmp/gpu-check)
# EXTRA            passed to bench/gpu_check.py (--dry-run: the same steps on the CPU with
#                  tiny settings, as tests/test_gpu_check.py runs it)
# Needs Python 3 with torch, torchvision, pandas and Pillow (a machine without a package
# index is fine: the rest comes from the wheelhouse).
set -euo pipefail
usage="usage: bash bench/gpu_check.sh CIFAR10_ARCHIVE [WHEELHOUSE|-] [OUT_DIR] [-- EXTRA...]"
if [ $# -lt 1 ] || [ ! -e "$1" ]; then
    echo "$usage (the archive must exist)" >&2
    exit 2
fi
ARCHIVE=$(realpath "$1"); shift
WHEELHOUSE=-
if [ $# -gt 0 ] && [ "$1" != "--" ]; then WHEELHOUSE=$1; shift; fi
OUT_DIR=${OUT:-/tmp/gpu-check}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then OUT_DIR=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
OUT_DIR=$(realpath "$OUT_DIR")
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0

if ! "$PYTHON" -c "import optuna, ray.tune" 2>/dev/null; then
    if [ "$WHEELHOUSE" = "-" ] || [ ! -d "$WHEELHOUSE" ]; then
        echo "optuna or ray is missing and no wheelhouse directory was given; $usage" >&2
        exit 2
    fi
    SITE=$(mktemp -d)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
        "$WHEELHOUSE"/*.whl
    export PYTHONPATH="$SITE:$PYTHONPATH"  # Ray's workers inherit it
fi

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null \
        || echo "no nvidia-smi"
    "$PYTHON" -c "import torch, optuna, ray; print('torch', torch.__version__, 'optuna', \
optuna.__version__, 'ray', ray.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$OUT_DIR/versions.txt"
timeout 540 "$PYTHON" bench/gpu_check.py --data "$ARCHIVE" --out "$OUT_DIR" "$@" 2>&1 \
    | tee "$OUT_DIR/gpu_check.log"
