"""Latency of the presets under a controlled background load: one run vs steady rounds.

While one busy process keeps a core occupied (a Python spin loop, like a neighbour's
job), each preset's batch-1 latency at 32x32 is measured ``--measurements`` times by
two methods, interleaved measurement by measurement, the presets' order rotated:

- before: one run of repeats, as ``python -m threshnet.profile --latency`` times it
  (warm-up 10, 50 repeats, torch's default CPU threads);
- after: what a search trial records now (threshnet.steady_latency): 5 rounds
  interleaved with the reference network (ThreshNet28), 10 repeats a round, outlier
  rounds re-measured, one CPU thread as a one-CPU trial has (``--threads``).

Prints, per method and preset, min/median/max ms and the coefficient of variation over
the measurements, how often the ranking 28 < 79 < 95 held, and for the steady method the
CV of the ratio to the reference; then one JSON line.

    python bench/latency_stability.py --measurements 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

from threshnet.latency import LatencySettings, device_name, measure_latency
from threshnet.model import build_model
from threshnet.presets import PUBLISHED_PRESETS, get_preset
from threshnet.steady_latency import measure_steady_latency, reference_config

SPIN = "while True: pass"


def stats(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "cv": statistics.stdev(values) / statistics.fmean(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measurements", type=int, default=10, help="at least 2")
    parser.add_argument("--busy-cores", type=int, default=1, help="background spin processes")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads, steady method")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--steady-only",
        action="store_true",
        help="skip the one-run method (with every core busy it takes seconds a pass)",
    )
    args = parser.parse_args()
    if args.measurements < 2:
        parser.error("--measurements must be at least 2 (a CV needs two)")
    device = torch.device(args.device)
    names = list(PUBLISHED_PRESETS)
    models = {name: build_model(get_preset(name)) for name in names}
    reference = build_model(reference_config())
    before_settings = LatencySettings()  # threshnet.profile's defaults
    steady_settings = LatencySettings(
        repeats=10, threads=args.threads if device.type == "cpu" else None
    )
    before: dict[str, list[float]] = {name: [] for name in names}
    after: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    load = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy_cores)]
    started = time.perf_counter()
    try:
        for index in range(args.measurements):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                if not args.steady_only:
                    single = measure_latency(
                        models[name], input_size=32, device=device, settings=before_settings
                    )
                    before[name].append(single.median_ms)
                steady = measure_steady_latency(
                    models[name],
                    reference,
                    input_size=32,
                    device=device,
                    settings=steady_settings,
                )
                after[name].append(steady.latency_ms)
                ratios[name].append(steady.ratio)
            print(
                f"measurement {index + 1}: "
                + ", ".join(
                    f"{name} {before[name][-1] if before[name] else math.nan:.2f} / "
                    f"{after[name][-1]:.2f} ms"
                    for name in names
                )
                + " (one run / steady)",
                flush=True,
            )
    finally:
        for process in load:
            process.kill()
    ordered = sorted(names, key=lambda name: get_preset(name).depth)

    def held(series: dict[str, list[float]]) -> int | None:
        if not all(series.values()):
            return None
        return sum(
            all(series[a][index] < series[b][index] for a, b in itertools.pairwise(ordered))
            for index in range(args.measurements)
        )

    result = {
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {device_name(device)}",
        "torch": torch.__version__,
        "busy_cores": args.busy_cores,
        "measurements": args.measurements,
        "seconds": time.perf_counter() - started,
        "before": {name: stats(values) for name, values in before.items() if values},
        "after": {name: stats(values) for name, values in after.items()},
        "after_ratio": {name: stats(values) for name, values in ratios.items()},
        "ranking_held": {"before": held(before), "after": held(after)},
    }
    for method in ("before", "after", "after_ratio"):
        for name in result[method]:
            row = result[method][name]
            print(
                f"{method:11s} {name}: min {row['min']:.3f} median {row['median']:.3f} "
                f"max {row['max']:.3f} CV {row['cv']:.1%}"
            )
    print(
        f"ranking {' < '.join(ordered)} held in {result['ranking_held']['before']} of "
        f"{args.measurements} (one run) and {result['ranking_held']['after']} of "
        f"{args.measurements} (steady)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
