"""Eager PyTorch vs ONNX Runtime: does the latency backend change the ranking of configs?

Times the published presets (ThreshNet28/79/95) and ``--configs`` configs of the search
space (drawn by Optuna's random sampler with ``--seed``, or the first finished trials of
a study's ``trials.csv`` with ``--trials-csv``) in both backends, each under the steady
protocol a search trial uses (threshnet.steady_latency: ``--rounds`` rounds interleaved
with the reference network ThreshNet28 in the same backend, fastest pass a round, median
of the rounds, outlier rounds re-measured), at batch 1 with ``--threads`` CPU threads
(ONNX Runtime's intra-op threads too). The backends alternate which goes first from one
config to the next. ONNX Runtime times each network's checked ONNX export
(threshnet.onnx_export; the export time is printed, not timed).

Prints the settings, each network's ms and ratio to the reference in both backends, and
the Kendall tau between the two rankings (by ms and by ratio), then one JSON line.

    python bench/latency_backends.py --configs 12 --seed 0 --rounds 5 --repeats 50 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pandas as pd
import torch
from scipy.stats import kendalltau

from space import DEFAULT_SPACE, params_to_config, sample_params
from threshnet.config import ThreshNetConfig
from threshnet.costs import static_costs
from threshnet.latency import LatencySettings, device_name
from threshnet.model import build_model
from threshnet.onnx_export import INSTALL_HINT, missing_packages
from threshnet.presets import PUBLISHED_PRESETS, get_preset
from threshnet.steady_latency import (
    BACKENDS,
    measure_steady_latency,
    reference_config,
    timed_network,
)

if TYPE_CHECKING:
    from threshnet.steady_latency import Network


def sampled_configs(count: int, seed: int) -> list[tuple[str, ThreshNetConfig]]:
    """``count`` configs of the default space from Optuna's random sampler."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [
        (
            f"sample-{index:02d}",
            params_to_config(sample_params(study.ask(), DEFAULT_SPACE), DEFAULT_SPACE),
        )
        for index in range(count)
    ]


def study_configs(path: Path, count: int) -> list[tuple[str, ThreshNetConfig]]:
    """The configs of the first ``count`` finished trials of a study's trials.csv."""
    trials = pd.read_csv(path)
    done = trials[(trials["status"] == "ok") & (trials["preset"].fillna("") == "")]
    return [
        (f"trial-{int(row['number']):04d}", ThreshNetConfig.from_json(row["config_json"]))
        for _, row in done.head(count).iterrows()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=12, help="besides the presets")
    parser.add_argument("--seed", type=int, default=0, help="of the random sampler")
    parser.add_argument("--trials-csv", type=Path, help="take the configs from this study")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50, help="in all, over the rounds")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads, both backends")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    missing = missing_packages()
    if missing:
        print(f"latency_backends: needs {', '.join(missing)}: {INSTALL_HINT}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    threads = args.threads if device.type == "cpu" else None
    torch.set_num_threads(args.threads)
    settings = LatencySettings(
        warmup=args.warmup, repeats=max(3, -(-args.repeats // args.rounds)), threads=threads
    )
    networks = [(name, get_preset(name)) for name in PUBLISHED_PRESETS]
    if args.trials_csv is not None:
        networks += study_configs(args.trials_csv, args.configs)
    else:
        networks += sampled_configs(args.configs, args.seed)
    import onnxruntime

    print(
        f"machine {platform.node()}, {os.cpu_count()} CPUs, {device_name(device)}; torch "
        f"{torch.__version__}, onnxruntime {onnxruntime.__version__}\n"
        f"batch 1, input {args.input_size}x{args.input_size}, float32, {args.threads} "
        f"thread(s) in both backends, warm-up {args.warmup}, {args.rounds} rounds of "
        f"{settings.repeats} repeats against ThreshNet28 in the same backend, outlier rounds "
        f"re-measured; {len(networks)} networks",
        flush=True,
    )
    started = time.perf_counter()

    def timed(config: ThreshNetConfig, backend: str) -> Network:
        return timed_network(
            build_model(config),
            backend,
            input_size=args.input_size,
            device=device,
            threads=args.threads,
        )

    references = {backend: timed(reference_config(), backend) for backend in BACKENDS}
    rows = []
    for index, (name, config) in enumerate(networks):
        torch.manual_seed(index)
        costs = static_costs(config, args.input_size)
        row: dict[str, object] = {"name": name, "params": costs.params}
        order = BACKENDS if index % 2 == 0 else BACKENDS[::-1]
        for backend in order:
            export_started = time.perf_counter()
            candidate = timed(config, backend)
            if backend == "onnxruntime":
                row["export_s"] = time.perf_counter() - export_started
            steady = measure_steady_latency(
                candidate,
                references[backend],
                input_size=args.input_size,
                device=device,
                settings=settings,
                rounds=args.rounds,
            )
            row[f"{backend}_ms"], row[f"{backend}_ratio"] = steady.latency_ms, steady.ratio
            row[f"{backend}_unsteady"] = steady.unsteady
        rows.append(row)
        print(
            f"{name:14s} {row['params']:>10,} params  eager {row['eager_ms']:8.3f} ms "
            f"(x{row['eager_ratio']:.2f})  onnxruntime {row['onnxruntime_ms']:8.3f} ms "
            f"(x{row['onnxruntime_ratio']:.2f})  ort/eager "
            f"{row['onnxruntime_ms'] / row['eager_ms']:.2f}  (export {row['export_s']:.1f} s)"
            + ("  unsteady" if row["eager_unsteady"] or row["onnxruntime_unsteady"] else ""),
            flush=True,
        )
    table = pd.DataFrame(rows)
    tau_ms = kendalltau(table["eager_ms"], table["onnxruntime_ms"])
    tau_ratio = kendalltau(table["eager_ratio"], table["onnxruntime_ratio"])
    print(
        f"Kendall tau, eager vs onnxruntime ranking of {len(table)} networks: by ms "
        f"{tau_ms.statistic:.3f} (p {tau_ms.pvalue:.2g}), by ratio to ThreshNet28 "
        f"{tau_ratio.statistic:.3f} (p {tau_ratio.pvalue:.2g}); "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    result = {
        "settings": {**vars(args), "trials_csv": str(args.trials_csv or "")},
        "repeats_per_round": settings.repeats,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "device_name": device_name(device),
        "kendall_tau_ms": tau_ms.statistic,
        "kendall_tau_ratio": tau_ratio.statistic,
        "rows": rows,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
