"""Training throughput on the CPU: fp32 against bf16 autocast and channels_last.

    python bench/cpu_precision.py                     # ThreshNet28/79 and a small searched config
    python bench/cpu_precision.py --threads 1 --batch 128 --rounds 5

Each round times every arm in turn (shuffled per round) on the same network, on the
proxy's step (SGD Nesterov, label smoothing, batch ``--batch`` of 32x32 images, one
thread as a proxy worker runs) and reports images per second, min/median/max over
rounds, and each arm's ratio to fp32 measured in the same round. Whether the faster
arms keep the proxy's accuracy is a separate, longer measurement (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from threshnet.config import ThreshNetConfig  # noqa: E402
from threshnet.model import build_model  # noqa: E402
from threshnet.presets import get_preset  # noqa: E402

ARMS = ("fp32", "fp32+channels_last", "bf16", "bf16+channels_last")
# trial 29 of the CPU case study: 1.18 M parameters, on its proxy front
SMALL_CONFIG = REPO / "bench" / "results" / "case-study-cpu" / "study" / "trials.csv"


def _networks() -> dict[str, ThreshNetConfig]:
    networks = {name: get_preset(name) for name in ("threshnet28", "threshnet79")}
    if SMALL_CONFIG.exists():
        import pandas as pd

        trials = pd.read_csv(SMALL_CONFIG)
        row = trials[trials["number"] == 29]
        if not row.empty:
            networks["trial-29"] = ThreshNetConfig.from_json(str(row["config_json"].iloc[0]))
    return networks


def _steps_per_second(model: nn.Module, arm: str, batch: int, steps: int) -> float:
    """Images per second of ``steps`` training steps of ``model`` in ``arm``."""
    channels_last = "channels_last" in arm
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    images = torch.randn(batch, 3, 32, 32).to(memory_format=memory)
    labels = torch.randint(0, 10, (batch,))
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if arm.startswith("bf16")
        else contextlib.nullcontext()
    )

    def step() -> None:
        with autocast:
            loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: first-call costs (oneDNN primitives) are not the steady rate
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--batch", type=int, default=128, help="training batch (128)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per arm and round (3)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"cpu_precision: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s), batch {args.batch}, {args.steps} steps x {args.rounds} rounds"
    )
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, config in _networks().items():
        torch.manual_seed(0)
        model = build_model(config)
        rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
        ratios: dict[str, list[float]] = {arm: [] for arm in ARMS}
        order = list(ARMS)
        for round_ in range(args.rounds):
            random.Random(round_).shuffle(order)
            this_round = {
                arm: _steps_per_second(model, arm, args.batch, args.steps) for arm in order
            }
            for arm in ARMS:
                rates[arm].append(this_round[arm])
                ratios[arm].append(this_round[arm] / this_round["fp32"])
        results[name] = {"images_per_second": rates, "ratio_to_fp32": ratios}
        print(f"\n{name}: images/s min/median/max; ratio to fp32 (same round) min/median/max")
        for arm in ARMS:
            r, q = rates[arm], ratios[arm]
            print(
                f"  {arm:20s} {min(r):7.1f} {statistics.median(r):7.1f} {max(r):7.1f}   "
                f"x{min(q):.2f} x{statistics.median(q):.2f} x{max(q):.2f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
