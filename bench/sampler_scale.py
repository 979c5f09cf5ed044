"""The sampler at scale: cost per suggestion up to 1,000 trials, quality past 200.

Two measurements on the surrogates of ``bench/sampler_efficiency.py``
(``search.methods.surrogates``: same space, same objectives, same hypervolume), for
sampler designs named as ``build_sampler`` there: a sampler of the product (``gp``,
``tpe``, ``gp-tpe``, ...) or ``gp-tpe@N`` (GP until N COMPLETE trials, then TPE).

``timing``: a study holding ``told`` COMPLETE trials (random configs of the space, told
their surrogate objectives with noise) and ``in_flight`` RUNNING ones (asked, never told,
as the driver leaves trials in flight in its study while it asks for the next), then one
untimed suggestion (the sampler's caches warm, as in a long run) and ``--repeats`` timed
ones, the designs interleaved; each timed suggestion is Optuna's ask plus sampling the
space on one thread, then told FAIL, which no sampler models, so every repeat sees the
same study. Printed: min / median / max wall seconds per suggestion and the median CPU
seconds (which a shared machine's load inflates far less).

``quality``: ``run_study`` of ``bench/sampler_efficiency.py`` to ``--trials``, one
trial in flight unless told otherwise; hypervolume ratio to random (same seed), median
(min-max) over the seeds, at 100/200/500/1000 trials, and the mean seconds per suggestion
over the five made before each of those counts.

    python bench/sampler_scale.py timing              # a few CPU-minutes (GP up to 200 told)
    python bench/sampler_scale.py timing --designs gp --told 500 1000 --in-flight 1 --repeats 1
    python bench/sampler_scale.py quality --jsonl runs.jsonl   # ~2 CPU-hours; resumes
    python bench/sampler_scale.py table runs.jsonl    # the quality table of the runs so far
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sampler_efficiency import RunResult, build_sampler, run_study, table

from search.methods.surrogates import SURROGATES, features, observed
from space import DEFAULT_SPACE, params_to_config, sample_params

DIRECTIONS = ["maximize", "minimize"]
POINTS = (100, 200, 500, 1000)


def history(surrogate: str, told: int, in_flight: int, seed: int) -> list[FrozenTrial]:
    """``told`` random configs told their noisy surrogate objectives, then ``in_flight``
    random configs asked and left RUNNING."""
    rng = random.Random(seed)
    model = SURROGATES[surrogate]
    study = optuna.create_study(
        directions=DIRECTIONS, sampler=optuna.samplers.RandomSampler(seed=seed)
    )
    for _ in range(told):
        trial = study.ask()
        config = params_to_config(sample_params(trial, DEFAULT_SPACE), DEFAULT_SPACE)
        study.tell(trial, list(observed(model(features(config)), rng)))
    for _ in range(in_flight):
        sample_params(study.ask(), DEFAULT_SPACE)
    return study.get_trials()


def _suggest_seconds(study: optuna.Study) -> tuple[float, float]:
    """Wall and CPU seconds of one suggestion (CPU time: what a shared machine's load
    inflates far less)."""
    started, cpu = time.perf_counter(), time.process_time()
    trial = study.ask()
    sample_params(trial, DEFAULT_SPACE)
    seconds = time.perf_counter() - started, time.process_time() - cpu
    study.tell(trial, state=TrialState.FAIL)
    return seconds


def timing(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(
        f"# seconds per suggestion: min/median/max wall (median CPU) of {args.repeats}, "
        "after one untimed; "
        f"{args.surrogate} surrogate, random history, one thread, optuna {optuna.__version__}"
    )
    print("| told | in flight | " + " | ".join(args.designs) + " |")
    print("|---|---|" + "---|" * len(args.designs))
    for told in args.told:
        for in_flight in args.in_flight:
            trials = history(args.surrogate, told, in_flight, args.seed)
            studies = {}
            for design in args.designs:
                if design == "gp" and told > args.gp_max_told:
                    continue  # see --gp-max-told
                study = optuna.create_study(
                    directions=DIRECTIONS, sampler=build_sampler(design, args.seed)
                )
                study.add_trials(trials)
                _suggest_seconds(study)
                studies[design] = study
            seconds: dict[str, list[tuple[float, float]]] = {design: [] for design in studies}
            for _ in range(args.repeats):  # interleaved: a load change hits every design
                for design, study in studies.items():
                    seconds[design].append(_suggest_seconds(study))
            cells = [
                _cell(seconds[design]) if design in seconds else "-" for design in args.designs
            ]
            print(f"| {told} | {in_flight} | " + " | ".join(cells) + " |", flush=True)


def _cell(seconds: list[tuple[float, float]]) -> str:
    """'min/median/max wall (median CPU)'."""
    wall = [w for w, _ in seconds]
    cpu = statistics.median(c for _, c in seconds)
    return f"{min(wall):.3f}/{statistics.median(wall):.3f}/{max(wall):.3f} ({cpu:.3f})"


def _saved_runs(path: str | None) -> list[RunResult]:
    """The runs a ``--jsonl`` file holds (none when there is no such file)."""
    if path is None or not Path(path).exists():
        return []
    results = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        for key in ("hypervolume", "suggest_seconds"):
            data[key] = {int(n): value for n, value in data[key].items()}
        results.append(RunResult(**data))
    return results


def quality(args: argparse.Namespace) -> None:
    checkpoints = [n for n in POINTS if n <= args.trials]
    done = {  # runs the --jsonl file already has to this many trials: not run again
        (r.sampler, r.surrogate, r.seed, r.in_flight)
        for r in _saved_runs(args.jsonl)
        if max(r.hypervolume) >= args.trials
    }
    jobs = [
        (design, surrogate, seed, args.trials, args.in_flight, checkpoints, checkpoints)
        for seed in range(args.seeds)  # whole seeds first: a cut-short bench has some
        for surrogate in args.surrogates
        for design in args.designs
        if (design, surrogate, seed, args.in_flight) not in done
    ]
    started = time.perf_counter()
    results = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for future in as_completed([pool.submit(run_study, *job) for job in jobs]):
            results.append(future.result())
            if args.jsonl:  # each run as it ends, for ``table`` if the bench is cut short
                with open(args.jsonl, "a", encoding="utf-8") as out:
                    out.write(json.dumps(results[-1].__dict__) + "\n")
    print(
        f"# sampler quality at scale: {args.seeds} seeds x {args.trials} trials, "
        f"{args.in_flight} in flight, presets queued first, reference = presets' nadir, "
        f"optuna {optuna.__version__}, {time.perf_counter() - started:.0f} s on "
        f"{args.workers} processes"
    )
    if args.jsonl:  # this run's and the earlier ones the file holds
        saved_table(args)
    else:
        print("\n".join(table(results, args.trials, checkpoints, checkpoints)))


def saved_table(args: argparse.Namespace) -> None:
    """The quality table of the runs saved in a ``--jsonl`` file (those with their random
    baseline)."""
    results = _saved_runs(args.jsonl)
    baselines = {(r.surrogate, r.in_flight, r.seed) for r in results if r.sampler == "random"}
    results = [r for r in results if (r.surrogate, r.in_flight, r.seed) in baselines]
    trials = max(max(r.hypervolume) for r in results)
    checkpoints = [n for n in POINTS if n <= trials]
    print(f"# {len(results)} runs from {args.jsonl}")
    print("\n".join(table(results, trials, checkpoints, checkpoints)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timed = commands.add_parser("timing", help="cost per suggestion against trials told")
    timed.add_argument("--designs", nargs="+", default=["gp", "tpe", "gp-tpe"])
    timed.add_argument("--told", type=int, nargs="+", default=list(POINTS))
    timed.add_argument("--in-flight", type=int, nargs="+", default=[1, 32])
    timed.add_argument("--repeats", type=int, default=3)
    timed.add_argument(
        "--gp-max-told", type=int, default=200, help="skip gp past this many told trials"
    )
    timed.add_argument("--surrogate", choices=SURROGATES, default="launch")
    timed.add_argument("--seed", type=int, default=0)
    rated = commands.add_parser("quality", help="hypervolume ratio to random up to --trials")
    rated.add_argument("--designs", nargs="+", default=["gp-tpe@200", "tpe", "gp-tpe@100"])
    rated.add_argument("--surrogates", nargs="+", default=list(SURROGATES), choices=SURROGATES)
    rated.add_argument("--trials", type=int, default=1000)
    rated.add_argument("--seeds", type=int, default=3)
    rated.add_argument("--in-flight", type=int, default=1)
    rated.add_argument("--workers", type=int, default=2, help="parallel processes")
    rated.add_argument(
        "--jsonl",
        help="append each run's numbers to this file as it ends; runs it has are not redone",
    )
    saved = commands.add_parser("table", help="the quality table of a --jsonl file")
    saved.add_argument("jsonl")
    args = parser.parse_args()
    if args.command == "timing":
        timing(args)
    elif args.command == "table":
        saved_table(args)
    else:
        args.designs = [*args.designs, "random"]  # the baseline of every ratio
        quality(args)


if __name__ == "__main__":
    main()
