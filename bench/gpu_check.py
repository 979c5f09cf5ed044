"""GPU check: the search's own trial function on the three published presets.

Runs ``search.trial.evaluate_trial`` (proxy training on the CIFAR-10 training split
minus the validation split, then batch-1 and batch-100 latency under the device gate)
for ThreshNet28/79/95 with the default study settings, and prints one line per preset
plus a JSON file. Needs only torch/torchvision/Pillow (no optuna or ray).

    python bench/gpu_check.py --data-dir /tmp/data/cifar10-jpeg --out result.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from search.settings import DEFAULT_SETTINGS
from search.trial import NUMBER_KEY, TrialContext, evaluate_trial
from space import config_to_params
from threshnet.presets import PUBLISHED_PRESETS, get_preset
from threshnet.training.data import load_split, locate_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cache-dir", default="/tmp/threshnet-cache")
    parser.add_argument("--epochs", type=int, default=DEFAULT_SETTINGS.train.epochs)
    parser.add_argument("--max-train-images", type=int, default=None, help="for a CPU dry run")
    parser.add_argument("--out", required=True, help="JSON file for the records")
    args = parser.parse_args()
    settings = dataclasses.replace(
        DEFAULT_SETTINGS,
        data_dir=args.data_dir,
        max_train_images=args.max_train_images,
        train=dataclasses.replace(DEFAULT_SETTINGS.train, epochs=args.epochs),
        latency=dataclasses.replace(DEFAULT_SETTINGS.latency, batch_size=100),
    )
    started = time.perf_counter()
    entry = locate_cache("train", data_dir=args.data_dir, cache_dir=args.cache_dir)
    load_split("train", data_dir=args.data_dir, cache_dir=args.cache_dir, entry=entry)
    print(f"data cached in {time.perf_counter() - started:.1f} s", flush=True)
    context = TrialContext(
        settings=settings, cache_dir=args.cache_dir, train_cache=entry, cpus_per_trial=4
    )
    records = []
    for number, name in enumerate(PUBLISHED_PRESETS):
        params = {**config_to_params(get_preset(name), settings.space), NUMBER_KEY: number}
        record = evaluate_trial(params, context)
        records.append(record)
        if record["status"] != "ok":
            print(f"{name}: {record['status']}: {record['error']}", flush=True)
            continue
        print(
            f"{name}: val_acc {record['val_acc']:.4f} after {record['epochs']} epochs, "
            f"train {record['train_seconds']:.1f} s ({record['images_per_second']:.0f} img/s), "
            f"latency b1 {record['latency_ms']:.3f} ms (p10 {record['latency_p10_ms']:.3f}, "
            f"p90 {record['latency_p90_ms']:.3f}), b100 {record['batch_per_image_ms']:.4f} "
            f"ms/image, trial {record['trial_seconds']:.1f} s on {record['device_name']}",
            flush=True,
        )
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"torch": torch.__version__, "records": records}, handle, indent=2)


if __name__ == "__main__":
    main()
