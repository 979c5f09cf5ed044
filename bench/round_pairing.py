"""How a round pairs the candidate with the reference: passes alternating, or in blocks.

A round's ratio is the candidate's fastest pass over the reference's. The product times
the two networks' passes alternately (threshnet.steady_latency); the arm it replaced timed
all of one network's passes, then all of the other's. For each arm of busy processes
(``--busy``) and each preset against the reference ThreshNet28, ``--rounds`` rounds of
each kind are timed back to back (which kind goes first alternates from round to round,
and so does which network leads a block round; an alternating round is a measurement's
first, led by the reference), by one thread's CPU time as studies time on a CPU, 10
passes a network a round. Prints the round ratios' CV for each kind, their ratio (the
alternating arm's over the block arm's) per preset, and its min/median/max over every
arm and preset; then one JSON line.

    python bench/round_pairing.py --busy 0 1 2 4 8 --rounds 24
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from latency_stability import busy  # the same spin-loop neighbours

from threshnet.latency import LatencySettings, cpu_clock, device_name, time_repeats
from threshnet.model import build_model
from threshnet.presets import PUBLISHED_PRESETS, get_preset
from threshnet.steady_latency import (
    coefficient_of_variation,
    measure_steady_latency,
    reference_config,
)

SETTINGS = LatencySettings(warmup=0, repeats=10, threads=1)


def alternating_round(model: torch.nn.Module, reference: torch.nn.Module) -> float:
    """One round as the product times it (passes alternating), by CPU time."""
    steady = measure_steady_latency(
        model, reference, input_size=32, settings=SETTINGS, rounds=1, max_extra_rounds=0,
        clock="cpu",
    )  # fmt: skip
    return steady.ratio


def block_round(
    model: Callable[[torch.Tensor], object],
    reference: Callable[[torch.Tensor], object],
    reference_first: bool,
) -> float:
    """One round with one network's passes all timed before the other's, by CPU time."""
    example = torch.randn(1, 3, 32, 32)
    clock = cpu_clock(1)
    cpu: dict[str, list[float]] = {"model": [], "reference": []}
    order = [("reference", reference), ("model", model)]
    for name, network in order if reference_first else order[::-1]:
        time_repeats(network, example, SETTINGS, warmup=False, cpu_times=cpu[name], clock=clock)
    return min(cpu["model"]) / min(cpu["reference"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--rounds", type=int, default=24)
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (a CV needs two)")
    started = time.perf_counter()
    torch.set_num_threads(1)
    reference = build_model(reference_config()).eval()
    models = {name: build_model(get_preset(name)).eval() for name in PUBLISHED_PRESETS}
    rows = []
    with torch.inference_mode():
        example = torch.randn(1, 3, 32, 32)
        for network in (reference, *models.values()):
            for _ in range(10):
                network(example)
        for processes in args.busy:
            with busy(processes):
                for name, model in models.items():
                    ratios: dict[str, list[float]] = {"alternating": [], "block": []}
                    for index in range(args.rounds):
                        kinds = ["alternating", "block"][:: 1 if index % 2 else -1]
                        for kind in kinds:
                            if kind == "block":
                                ratios[kind].append(block_round(model, reference, index % 2 == 0))
                            else:
                                ratios[kind].append(alternating_round(model, reference))
                    row = {
                        "busy": processes,
                        "preset": name,
                        **{f"{kind}_cv": coefficient_of_variation(v) for kind, v in ratios.items()},
                        **{f"{kind}_median": statistics.median(v) for kind, v in ratios.items()},
                    }
                    row["cv_ratio"] = row["alternating_cv"] / row["block_cv"]
                    rows.append(row)
                    print(
                        f"busy {processes} {name}: round-ratio CV alternating "
                        f"{row['alternating_cv']:.1%} (median {row['alternating_median']:.3f}), "
                        f"block {row['block_cv']:.1%} (median {row['block_median']:.3f}); "
                        f"alternating / block {row['cv_ratio']:.2f}",
                        flush=True,
                    )
    cv_ratios = [row["cv_ratio"] for row in rows]
    print(
        f"CV ratio alternating / block over {len(rows)} arm-presets: min {min(cv_ratios):.2f}, "
        f"median {statistics.median(cv_ratios):.2f}, max {max(cv_ratios):.2f}"
    )
    result = {
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {device_name(torch.device('cpu'))}",
        "rounds": args.rounds,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
