"""Per-trial fixed overhead of a real search: this tree against a baseline commit.

Each arm runs the real CLI (``python -m search.run --smoke``, presets off, the random
sampler with one seed, so both arms draw the same configs) from its own source tree:
this checkout, and a ``git worktree`` of ``--baseline-ref`` (default: the commit before
warm workers, where each trial ran in a new process). Trials run one at a time (a trial
takes every CPU), so the time between two trials' completions is the later trial's whole
cost. Its fixed overhead is that gap minus its training (``train_seconds``) and minus its
latency timing, estimated the same way in both arms as (warm-up + repeats) x the measured
median latency; the validation pass, also proxy work, is kept negligible (50 images).
The first trial of a run is left out (it pays Ray's start).
Arms alternate within each round; the ratio baseline / this tree is reported per round
and as min/median/max.

    python bench/trial_overhead.py --data-dir ../shared/data/cifar10-jpeg.tar.xz
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
LATENCY_WARMUP, LATENCY_REPEATS = 1, 3
VAL_IMAGES = 50  # validation is proxy work, not fixed cost: kept too small to matter


def run_arm(tree: Path, args: argparse.Namespace, out: Path, name: str) -> list[float]:
    """Run one study from ``tree``; the fixed overhead (s) of each trial after the first."""
    command = [
        sys.executable,
        "-m",
        "search.run",
        "--smoke",
        "--no-presets",
        "--sampler",
        "random",
        "--seed",
        "0",
        "--trials",
        str(args.trials),
        "--data-dir",
        args.data_dir,
        "--cache-dir",
        args.cache_dir,
        "--out",
        str(out),
        "--name",
        name,
        "--num-cpus",
        str(args.cpus),
        "--cpus-per-trial",
        str(args.cpus),
        "--latency-warmup",
        str(LATENCY_WARMUP),
        "--latency-repeats",
        str(LATENCY_REPEATS),
        "--val-size",
        str(VAL_IMAGES),
    ]
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True, text=True)
    trials = pd.read_csv(out / name / "trials.csv")
    trials = trials[trials["status"] == "ok"].copy()
    trials["complete"] = pd.to_datetime(trials["datetime_complete"], format="ISO8601")
    trials = trials.sort_values("complete")
    gaps = trials["complete"].diff().dt.total_seconds()
    latency = (LATENCY_WARMUP + LATENCY_REPEATS) * trials["latency_ms"] / 1000.0
    overhead = gaps - trials["train_seconds"] - latency
    return [float(value) for value in overhead.iloc[1:]]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="ImageFolder root or archive")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "tn-cache"))
    parser.add_argument("--baseline-ref", default="52cba37", help="commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=6, help="trials per study")
    parser.add_argument("--cpus", type=int, default=2, help="Ray CPUs = CPUs per trial")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trial-overhead-"))
    baseline = work / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(baseline), args.baseline_ref],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    arms = {f"baseline {args.baseline_ref}": baseline, "this tree": REPO}
    medians: dict[str, list[float]] = {arm: [] for arm in arms}
    ratios = []
    try:
        for round_index in range(1, args.rounds + 1):
            for arm, tree in arms.items():
                started = time.perf_counter()
                name = f"{'base' if tree == baseline else 'this'}-{round_index}"
                overhead = run_arm(tree, args, work / "runs", name)
                medians[arm].append(statistics.median(overhead))
                print(
                    f"round {round_index} {arm}: per-trial overhead median "
                    f"{medians[arm][-1]:.3f} s (min {min(overhead):.3f}, max "
                    f"{max(overhead):.3f}; {len(overhead)} trials; run "
                    f"{time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
            base, this = (medians[arm][-1] for arm in arms)
            ratios.append(base / max(this, 1e-9))
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(baseline)], cwd=REPO, check=False
        )
    for arm in arms:
        print(f"{arm}: per-trial overhead medians over rounds {summary(medians[arm])}")
    print(f"ratio baseline / this tree: {summary(ratios)}")
    print(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "trials_per_study": args.trials,
                "rounds": args.rounds,
                "overhead_medians_s": medians,
                "ratio": summary(ratios),
            }
        )
    )


if __name__ == "__main__":
    main()
