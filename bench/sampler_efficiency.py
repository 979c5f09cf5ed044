"""Search efficiency of every offered sampler on surrogates of the product's own space.

Each sampler is built by the product's factory (``search.methods.samplers.make_sampler``) and
drives the product's space (``space.sample_params``, the published presets queued first)
in-process: no Ray, no training. A trial's objectives come from the product's surrogates
(``search.methods.surrogates``: ``launch`` and ``compute``, built on the config's static
costs), which add observation noise (sd 0.004 accuracy, 3 % latency) to what the sampler sees;
the hypervolume is computed on the noise-free values, with the product's default
reference (the presets' nadir), and reported relative to random search with the same
seed. ``--in-flight 4`` keeps four trials asked but not told (constant liar for TPE,
pending points for GP; GP runs that way only with ``--gp-in-flight``, as each run takes
about 10 CPU-minutes). The time per suggestion is the sampler's ask plus sampling, on
one thread.

    python bench/sampler_efficiency.py                      # the full table (~25 min)
    python bench/sampler_efficiency.py --samplers gp random --gp-in-flight --in-flight 4
    python bench/sampler_efficiency.py --trials 40 --seeds 1 --samplers tpe random
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.methods.samplers import SAMPLERS, make_sampler
from search.methods.surrogates import SURROGATES, features, observed
from space import DEFAULT_SPACE, params_to_config, preset_points, sample_params
from studies.pareto import default_reference, hypervolume
from threshnet.presets import PUBLISHED_PRESETS

CHECKPOINTS = (25, 50, 100, 200)
TIMING_POINTS = (10, 50, 100, 200)


@dataclass(frozen=True)
class RunResult:
    sampler: str
    surrogate: str
    seed: int
    in_flight: int
    hypervolume: dict[int, float]  # trials -> noise-free hypervolume
    suggest_seconds: dict[int, float]  # finished trials -> seconds per suggestion


def build_sampler(design: str, seed: int) -> optuna.samplers.BaseSampler:
    """The product's sampler by name, or ``gp-tpe@N``: gp-tpe handing over at N trials.

    Without gp-tpe's pacing: a trial here takes no time, so the GP's suggestions are all of
    the time, which pacing would answer with TPE; with trials at least as long as a GP
    suggestion, one at a time, pacing never acts (tests/test_handover.py), and that is the
    study these benches stand for. Pacing is measured by bench/driver_scale.py.
    """
    name, _, handover = design.partition("@")
    if handover:
        return make_sampler(name, seed, gp_trials=int(handover), gp_share=1.0)
    return make_sampler(name, seed, gp_share=1.0)


def run_study(
    sampler: str,
    surrogate: str,
    seed: int,
    trials: int,
    in_flight: int,
    checkpoints: Sequence[int] = CHECKPOINTS,
    timing_points: Sequence[int] = TIMING_POINTS,
) -> RunResult:
    """One study: presets first, then the sampler's suggestions (``sampler``: a design of
    ``build_sampler``), ``in_flight`` at a time; hypervolume at each checkpoint, seconds per
    suggestion at each timing point."""
    torch.set_num_threads(1)  # one core per run; runs go in parallel processes
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    model = SURROGATES[surrogate]
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=build_sampler(sampler, seed)
    )
    for _, _, params in preset_points(DEFAULT_SPACE)[0]:
        study.enqueue_trial(params)
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    timings: dict[int, list[float]] = {point: [] for point in timing_points}
    pending: list[tuple[optuna.Trial, tuple[float, float], str]] = []

    def ask() -> None:
        started = time.perf_counter()
        trial = study.ask()
        params = sample_params(trial, DEFAULT_SPACE)
        seconds = time.perf_counter() - started
        finished = len(rows)
        for point in timing_points:  # the suggestions made with point-5..point told
            if point - 5 <= finished <= point and trial.number >= len(PUBLISHED_PRESETS):
                timings[point].append(seconds)
        config = params_to_config(params, DEFAULT_SPACE)
        pending.append((trial, model(features(config)), _preset_of(trial.number)))

    while len(rows) < trials:
        while len(pending) < in_flight and len(rows) + len(pending) < trials:
            ask()
        trial, truth, preset = pending.pop(0)
        study.tell(trial, list(observed(truth, rng)))
        rows.append(
            {"number": len(rows), "val_acc": truth[0], "latency_ms": truth[1], "preset": preset}
        )
    frame = pd.DataFrame(rows)
    reference = default_reference(frame)
    return RunResult(
        sampler=sampler,
        surrogate=surrogate,
        seed=seed,
        in_flight=in_flight,
        hypervolume={n: hypervolume(frame.iloc[:n], reference) for n in checkpoints if n <= trials},
        suggest_seconds={p: statistics.fmean(t) for p, t in timings.items() if t},
    )


def _preset_of(number: int) -> str:
    return PUBLISHED_PRESETS[number] if number < len(PUBLISHED_PRESETS) else ""


def _jobs(args: argparse.Namespace) -> Iterator[tuple[str, str, int, int, int]]:
    for surrogate in args.surrogates:
        for in_flight in args.in_flight:
            for seed in range(args.seeds):
                for sampler in args.samplers:
                    if sampler.startswith("gp") and in_flight > 1 and not args.gp_in_flight:
                        continue  # ~10 CPU-minutes a run: see --gp-in-flight
                    yield sampler, surrogate, seed, args.trials, in_flight


def _mean_seconds(runs: list[RunResult], point: int) -> str:
    seconds = [run.suggest_seconds[point] for run in runs if point in run.suggest_seconds]
    return f"{statistics.fmean(seconds):.3f}" if seconds else "-"


def table(
    results: list[RunResult],
    trials: int,
    checkpoints: Sequence[int] = CHECKPOINTS,
    timing_points: Sequence[int] = TIMING_POINTS,
) -> list[str]:
    """Median (min-max) hypervolume ratio to random with the same seed, per checkpoint;
    mean seconds per suggestion at each timing point."""
    random_hv = {
        (r.surrogate, r.in_flight, r.seed): r.hypervolume for r in results if r.sampler == "random"
    }
    points = [n for n in checkpoints if n <= trials]
    lines = [
        "| surrogate | in flight | sampler | "
        + " | ".join(f"HV/random @{n}" for n in points)
        + " | s/suggestion @"
        + "/".join(map(str, timing_points))
        + " |",
        "|---" * (4 + len(points)) + "|",
    ]
    keys = sorted({(r.surrogate, r.in_flight, r.sampler) for r in results})
    for surrogate, in_flight, sampler in keys:
        runs = [
            r
            for r in results
            if (r.surrogate, r.in_flight, r.sampler) == (surrogate, in_flight, sampler)
        ]
        cells = []
        for n in points:
            ratios = [
                r.hypervolume[n] / random_hv[(surrogate, in_flight, r.seed)][n]
                for r in runs
                if random_hv[(surrogate, in_flight, r.seed)][n] > 0
            ]
            cells.append(
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
                if ratios
                else "n/a"
            )
        timing = "/".join(_mean_seconds(runs, point) for point in timing_points)
        lines.append(
            f"| {surrogate} | {in_flight} | {sampler} | " + " | ".join(cells) + f" | {timing} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # gp-tpe is gp's run up to its hand-over (200 trials): bench/sampler_scale.py runs it
    offered = [name for name in SAMPLERS if name != "gp-tpe"]
    parser.add_argument("--samplers", nargs="+", default=offered, choices=SAMPLERS)
    parser.add_argument("--surrogates", nargs="+", default=list(SURROGATES), choices=SURROGATES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    parser.add_argument(
        "--gp-in-flight",
        action="store_true",
        help="also run GP with trials in flight (about 10 CPU-minutes per run of 200)",
    )
    parser.add_argument("--json", help="also write every run's numbers to this file")
    args = parser.parse_args()
    if "random" not in args.samplers:
        parser.error("random is the baseline: include it in --samplers")
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_study, *job) for job in _jobs(args)]
        results = [future.result() for future in futures]
    print(
        f"# sampler efficiency: {args.seeds} seeds x {args.trials} trials, presets queued "
        f"first, reference = presets' nadir, optuna {optuna.__version__}, "
        f"{time.perf_counter() - started:.0f} s on {args.workers} processes"
    )
    print("\n".join(table(results, args.trials)))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1))


if __name__ == "__main__":
    main()
