"""``python -m threshnet.train``: full training of a config (see :mod:`threshnet.training.train`).

python -m threshnet.train --preset threshnet79 --data-dir /data/cifar10
python -m threshnet.train --config runs/s/configs/trial-0012.json --epochs 50 --device cuda
"""

from __future__ import annotations

import sys

from threshnet.cli import run_cli
from threshnet.training.train import PROG, main

if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
