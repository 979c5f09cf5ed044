"""Multi-fidelity search: MO-ASHA (search.methods.mo_asha) against full-budget trials ("fifo").

The product's sampler (``search.methods.samplers.make_sampler``; default ``DEFAULT_SAMPLER``) drives
the product's space (``space.sample_params``, the published presets queued first) in-process,
with no Ray and no training; ``W`` asynchronous workers (default 4) run in simulated time,
one epoch per time unit, and a free worker asks the sampler for its next trial at once.

Learning-curve surrogate. A config's full-budget accuracy ``A`` and its latency come from
``bench/sampler_efficiency.py``'s surrogates (``launch`` by default, same ``features``).
Its accuracy after ``e`` epochs is::

    acc(e) = chance + (A - chance) * g(e) / g(E),   g(e) = 1 - exp(-e / tau),  chance = 0.1

so the full budget ``E`` (4 epochs) reaches ``A`` exactly (the full-budget problem, front and
reference are sampler_efficiency's), and ``tau`` grows with depth and parameters (deeper and
larger nets learn more slowly): ``tau = lo + (hi - lo) * (0.6 d + 0.4 p)``, ``d`` and ``p``
the config's depth and log-parameters scaled to [0, 1] over the space, ``--tau 1.0 1.5`` by
default. Learning curves cross, so rankings at 1 epoch are informative but imperfect (the
run prints the rank correlation between 1-epoch and full-budget accuracy). Every epoch
evaluation adds independent noise (sd ``--acc-noise``, 0.004); latency is measured once, before
training, with 3 % log-normal noise (``--latency-noise``).

Arms. ``fifo``: every trial trains the full budget and is told COMPLETE with its noisy values.
``mo-asha``: rungs ``RungSchedule.for_epochs(E)`` = (1, 2, 4) (or ``--rungs``), eta 3; at each
rung but the last ``MultiObjectiveRungs.on_result`` decides (``--rule crowding``, the
product's) or ``EpsilonNetRungs``, Syne Tune's MOASHA ranking (``--rule epsilon-net``); the
published presets are always trained in full, as in the product; a trial reaching the full
budget is told COMPLETE with its noisy values, a stopped one as ``--tell`` says: ``pruned``
(state PRUNED, no values) or ``rung`` (COMPLETE with its rung accuracy and latency). The budget
counts every epoch trained, stopped trials' included, charged when a trial reaches a rung; the
front at a budget ``b`` holds the trials that reached the full budget while at most ``b``
epochs were spent (never early-stopped ones), with their noise-free full-budget values;
hypervolume uses the product's default reference (the presets' nadir, noise-free). Reported
over the seeds (min / median / max): HV(fifo @B), HV(mo-asha @B/2), HV(mo-asha @B), their
ratios (per seed), trials started and trials that reached the full budget, and the first trial
the sampler modelled (``--startup rung``: the product's start-up, over trials that reached a
rung; ``complete``: Optuna's own GP start-up, over COMPLETE trials only, as before). Target:
HV(mo-asha @B/2) >= 1.3 x HV(fifo @B). Runs go in parallel processes (``--processes``, 2 by
default), one thread each.

    python bench/multi_fidelity.py                     # gp, --tell pruned, 3 seeds
    python bench/multi_fidelity.py --startup complete  # GP's start-up as before
    python bench/multi_fidelity.py --rule epsilon-net --rungs 1 3 4  # Syne Tune's rule
    python bench/multi_fidelity.py --tell rung
    python bench/multi_fidelity.py --sampler tpe --tell pruned
    python bench/multi_fidelity.py --sampler random --seeds 5 --budget 400
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.trial import TrialState
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sampler_efficiency import SURROGATES, Features, features
from search.methods.mo_asha import MultiObjectiveRungs, RungSchedule, nondominated_layers
from search.methods.rung_startup import reached_a_rung
from search.methods.samplers import DEFAULT_SAMPLER, SAMPLERS, STARTUP_TRIALS, make_sampler
from space import DEFAULT_SPACE, params_to_config, preset_points, sample_params
from studies.pareto import Reference, default_reference, hypervolume

CHANCE = 0.1  # CIFAR-10
DEPTH_RANGE = (27, 131)  # the space's depths (sampled)
PARAMS_RANGE_M = (2.0, 85.0)  # the space's parameter counts, millions (sampled)
ARMS = ("fifo", "mo-asha")
RULES = ("crowding", "epsilon-net")
STARTUPS = ("rung", "complete")


@dataclass(frozen=True)
class Settings:
    surrogate: str
    sampler: str
    startup: str
    rule: str
    rungs: tuple[int, ...]
    tell: str
    workers: int
    budget: int
    epochs: int
    eta: float
    tau: tuple[float, float]
    acc_noise: float
    latency_noise: float


@dataclass(frozen=True)
class Curve:
    """A config's noise-free learning curve and latency."""

    final_accuracy: float  # after the full budget
    latency_ms: float
    tau: float  # epochs
    full: int  # the full budget, epochs

    def accuracy(self, epochs: int) -> float:
        def gain(e: float) -> float:
            return 1.0 - math.exp(-e / self.tau)

        return CHANCE + (self.final_accuracy - CHANCE) * gain(epochs) / gain(self.full)


def _scaled(value: float, low: float, high: float) -> float:
    return min(max((value - low) / (high - low), 0.0), 1.0)


def learning_time(f: Features, tau: tuple[float, float]) -> float:
    """tau in epochs: deeper and larger nets learn more slowly."""
    depth = _scaled(f.depth, *DEPTH_RANGE)
    size = _scaled(math.log(f.params_m), *map(math.log, PARAMS_RANGE_M))
    return tau[0] + (tau[1] - tau[0]) * (0.6 * depth + 0.4 * size)


def curve_of(params: dict[str, object], settings: Settings) -> Curve:
    f = features(params_to_config(params, DEFAULT_SPACE))
    accuracy, latency = SURROGATES[settings.surrogate](f)
    return Curve(accuracy, latency, learning_time(f, settings.tau), settings.epochs)


def reference_of(settings: Settings) -> Reference:
    """The product's default reference: the presets' noise-free full-budget nadir."""
    rows = []
    for name, _, params in preset_points(DEFAULT_SPACE)[0]:
        curve = curve_of(params, settings)
        rows.append(
            {"val_acc": curve.final_accuracy, "latency_ms": curve.latency_ms, "preset": name}
        )
    return default_reference(pd.DataFrame(rows))


class EpsilonNetRungs(MultiObjectiveRungs):
    """Syne Tune's MOASHA ranking (its ``NonDominatedPriority``), written here from its
    description: non-dominated layers; inside a layer an epsilon-net order, seeded at the
    most accurate result, each next result the farthest (Euclidean) from those already
    chosen; a result continues iff at most n/eta results are ordered ahead of it. Unlike
    Syne Tune's, the distances are taken on objectives scaled to their range in the layer
    (raw accuracy and milliseconds would let latency alone decide)."""

    def continues(self, losses: np.ndarray) -> bool:
        order = epsilon_net_order(losses)
        ahead = order.index(len(losses) - 1)
        return ahead * self.schedule.reduction_factor <= len(losses)


def epsilon_net_order(losses: np.ndarray) -> list[int]:
    """Rows of ``losses`` (minimised columns), best first: layer by layer, epsilon-net order."""
    layers = nondominated_layers(losses)
    order: list[int] = []
    for layer in range(int(layers.max()) + 1):
        members = np.flatnonzero(layers == layer)
        points = losses[members]
        span = points.max(axis=0) - points.min(axis=0)
        scaled = (points - points.min(axis=0)) / np.where(span > 0, span, 1.0)
        chosen = [int(np.argmin(scaled[:, 0]))]
        nearest = np.linalg.norm(scaled - scaled[chosen[0]], axis=1)
        while len(chosen) < len(members):
            nearest[chosen] = -1.0
            pick = int(np.argmax(nearest))
            chosen.append(pick)
            nearest = np.minimum(nearest, np.linalg.norm(scaled - scaled[pick], axis=1))
        order.extend(int(members[i]) for i in chosen)
    return order


def sampler_of(settings: Settings, seed: int) -> optuna.samplers.BaseSampler:
    """The product's sampler; ``--startup complete``: GP as before its start-up counted
    rungs (Optuna's own, over COMPLETE trials only). gp-tpe without its pacing: epochs
    here take simulated time, none of the clock's (bench/sampler_efficiency.py's
    build_sampler says why)."""
    if settings.startup == "complete" and settings.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    return make_sampler(settings.sampler, seed, gp_share=1.0)


def models(study: optuna.Study, settings: Settings) -> bool:
    """Whether the sampler models the next suggestion (past its start-up)."""
    if settings.sampler == "random":
        return False
    reached, complete = reached_a_rung(study)
    if settings.startup == "complete" and settings.sampler == "gp":
        return complete >= STARTUP_TRIALS
    return reached >= STARTUP_TRIALS and complete > 0


@dataclass
class _Running:
    trial: optuna.Trial
    curve: Curve
    latency_ms: float  # as measured (noisy), before training
    epochs: int = 0  # trained so far


@dataclass(frozen=True)
class ArmResult:
    arm: str
    seed: int
    hypervolume: dict[int, float]  # budget (epochs) -> hypervolume
    started: dict[int, int]  # budget -> trials asked before it was spent
    full: dict[int, int]  # budget -> trials that reached the full budget within it
    ceiling: dict[int, float]  # budget -> hypervolume of every config asked within it
    stopped: int
    modelling_from: int  # the first trial the sampler modelled (-1: none)
    rank_correlation: float  # Spearman, noise-free acc at the first rung vs the full budget
    ask_seconds: float
    seconds: float


def run_arm(arm: str, seed: int, settings: Settings) -> ArmResult:
    """One study of one arm: W workers in simulated time until the budget is spent."""
    started_at = time.perf_counter()
    torch.set_num_threads(1)  # one core per run; runs go in parallel processes
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    full = settings.epochs
    schedule = RungSchedule(settings.rungs if arm == "mo-asha" else (full,), settings.eta)
    rungs = (EpsilonNetRungs if settings.rule == "epsilon-net" else MultiObjectiveRungs)(schedule)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=sampler_of(settings, seed)
    )
    presets = preset_points(DEFAULT_SPACE)[0]
    for _, _, params in presets:
        study.enqueue_trial(params)
    rng = random.Random(seed)
    events: list[tuple[int, int, int]] = []  # (time, order, worker)
    order = itertools.count()
    running: dict[int, _Running] = {}
    asks: list[int] = []  # epochs spent when each trial was asked
    done: list[tuple[int, Curve]] = []  # (epochs spent, curve) of full-budget trials
    curves: list[Curve] = []
    spent = stopped = 0
    modelling_from = -1
    ask_seconds = 0.0

    def start(worker: int, now: int) -> None:
        nonlocal ask_seconds, modelling_from
        if modelling_from < 0 and models(study, settings):
            modelling_from = len(study.trials)
        began = time.perf_counter()
        trial = study.ask()
        params = sample_params(trial, DEFAULT_SPACE)
        ask_seconds += time.perf_counter() - began
        curve = curve_of(params, settings)
        latency = curve.latency_ms * math.exp(rng.gauss(0, settings.latency_noise))
        running[worker] = _Running(trial, curve, latency)
        asks.append(spent)
        curves.append(curve)
        heapq.heappush(events, (now + schedule.rungs[0], next(order), worker))

    for worker in range(settings.workers):
        start(worker, 0)
    while spent < settings.budget:
        now, _, worker = heapq.heappop(events)
        run = running[worker]
        epochs = next(r for r in schedule.rungs if r > run.epochs)
        spent += epochs - run.epochs
        run.epochs = epochs
        if spent > settings.budget:
            break
        accuracy = run.curve.accuracy(epochs) + rng.gauss(0, settings.acc_noise)
        if epochs == full:
            study.tell(run.trial, [accuracy, run.latency_ms])
            done.append((spent, run.curve))
        elif (
            rungs.on_result(str(run.trial.number), epochs, accuracy, run.latency_ms)
            or run.trial.number < len(presets)  # as in the product: presets train in full
        ):
            following = next(r for r in schedule.rungs if r > epochs)
            heapq.heappush(events, (now + following - epochs, next(order), worker))
            continue
        elif settings.tell == "pruned":
            study.tell(run.trial, state=TrialState.PRUNED)
            stopped += 1
        else:
            study.tell(run.trial, [accuracy, run.latency_ms])
            stopped += 1
        if spent < settings.budget:
            start(worker, now)

    reference = reference_of(settings)
    budgets = sorted({settings.budget // 2, settings.budget})
    hv, full_counts, ceiling = {}, {}, {}
    for budget in budgets:
        front = [c for s, c in done if s <= budget]
        hv[budget] = _hypervolume(front, reference)
        full_counts[budget] = len(front)
        ceiling[budget] = _hypervolume(
            [c for s, c in zip(asks, curves, strict=True) if s < budget], reference
        )
    first = schedule.rungs[0]
    correlation = spearmanr([c.accuracy(first) for c in curves], [c.final_accuracy for c in curves])
    return ArmResult(
        arm=arm,
        seed=seed,
        hypervolume=hv,
        started={b: sum(s < b for s in asks) for b in budgets},
        full=full_counts,
        ceiling=ceiling,
        stopped=stopped,
        modelling_from=modelling_from,
        rank_correlation=float(correlation[0]),
        ask_seconds=ask_seconds,
        seconds=time.perf_counter() - started_at,
    )


def _hypervolume(curves: list[Curve], reference: Reference) -> float:
    """Hypervolume of the curves' noise-free full-budget (accuracy, latency)."""
    frame = pd.DataFrame(
        {
            "val_acc": [c.final_accuracy for c in curves],
            "latency_ms": [c.latency_ms for c in curves],
        }
    )
    return hypervolume(frame, reference) if curves else 0.0


def _spread(values: list[float], digits: int = 3) -> list[str]:
    return [f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values))]


def table(results: list[ArmResult], settings: Settings) -> list[str]:
    """Min / median / max over the seeds; ratios are taken per seed."""
    half, whole = settings.budget // 2, settings.budget
    by = {(r.arm, r.seed): r for r in results}
    seeds = sorted({r.seed for r in results})

    def arm(name: str) -> list[ArmResult]:
        return [by[(name, seed)] for seed in seeds]

    fifo, asha = arm("fifo"), arm("mo-asha")
    lines = ["| quantity | min | median | max |", "|---|---|---|---|"]

    def row(label: str, values: list[float], digits: int = 3) -> None:
        lines.append(f"| {label} | " + " | ".join(_spread(values, digits)) + " |")

    row(f"HV fifo @{half}", [r.hypervolume[half] for r in fifo])
    row(f"HV fifo @{whole}", [r.hypervolume[whole] for r in fifo])
    row(f"HV mo-asha @{half}", [r.hypervolume[half] for r in asha])
    row(f"HV mo-asha @{whole}", [r.hypervolume[whole] for r in asha])
    ratio_rows = [
        (
            f"**HV mo-asha @{half} / fifo @{whole}** (target >= 1.3)",
            [a.hypervolume[half] for a in asha],
        ),
        (f"HV mo-asha @{whole} / fifo @{whole}", [a.hypervolume[whole] for a in asha]),
        (
            f"ceiling: HV of every config mo-asha asked @{half} / fifo @{whole}",
            [a.ceiling[half] for a in asha],
        ),
    ]
    for label, values in ratio_rows:
        ratios = [
            value / f.hypervolume[whole] if f.hypervolume[whole] > 0 else math.nan
            for value, f in zip(values, fifo, strict=True)
        ]
        row(label, ratios, 2)
    for name, runs in (("fifo", fifo), ("mo-asha", asha)):
        for budget in (half, whole):
            row(f"{name} trials started @{budget}", [r.started[budget] for r in runs], 0)
            row(f"{name} trials at full budget @{budget}", [r.full[budget] for r in runs], 0)
        row(f"{name}: first trial the sampler modelled", [r.modelling_from for r in runs], 0)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLERS)
    parser.add_argument(
        "--startup",
        default="rung",
        choices=STARTUPS,
        help="GP's start-up counts trials that reached a rung (the product) or COMPLETE ones",
    )
    parser.add_argument("--rule", default="crowding", choices=RULES, help="ranking at a rung")
    parser.add_argument(
        "--rungs", type=int, nargs="+", help="mo-asha's rungs (default: halving to 1 epoch)"
    )
    parser.add_argument("--tell", default="pruned", choices=("pruned", "rung"))
    parser.add_argument("--surrogate", default="launch", choices=SURROGATES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=200, help="epochs, stopped trials' too")
    parser.add_argument("--epochs", type=int, default=4, help="full budget of one trial")
    parser.add_argument("--eta", type=float, default=3.0, help="reduction factor")
    parser.add_argument("--workers", type=int, default=4, help="simulated workers")
    parser.add_argument("--tau", type=float, nargs=2, default=(1.0, 1.5), metavar=("LO", "HI"))
    parser.add_argument("--acc-noise", type=float, default=0.004)
    parser.add_argument("--latency-noise", type=float, default=0.03)
    parser.add_argument("--processes", type=int, default=2, help="parallel processes")
    parser.add_argument("--json", help="also write every run's numbers to this file")
    args = parser.parse_args()
    rungs = RungSchedule(
        tuple(args.rungs) if args.rungs else RungSchedule.for_epochs(args.epochs).rungs, args.eta
    ).rungs
    if rungs[-1] != args.epochs:
        parser.error(f"--rungs must end at the full budget, --epochs {args.epochs}")
    settings = Settings(
        surrogate=args.surrogate,
        sampler=args.sampler,
        startup=args.startup,
        rule=args.rule,
        rungs=rungs,
        tell=args.tell,
        workers=args.workers,
        budget=args.budget,
        epochs=args.epochs,
        eta=args.eta,
        tau=tuple(args.tau),
        acc_noise=args.acc_noise,
        latency_noise=args.latency_noise,
    )
    began = time.perf_counter()
    jobs = [(arm, seed) for arm in reversed(ARMS) for seed in range(args.seeds)]  # slow first
    with ProcessPoolExecutor(max_workers=args.processes) as pool:
        futures = [pool.submit(run_arm, arm, seed, settings) for arm, seed in jobs]
        results = [future.result() for future in futures]
    wall = time.perf_counter() - began
    asha = [r for r in results if r.arm == "mo-asha"]
    print(
        f"# multi-fidelity: sampler {args.sampler}, --startup {args.startup}, --rule "
        f"{args.rule}, --tell {args.tell}, surrogate {args.surrogate}, {args.workers} "
        f"workers, budget {args.budget} epochs (half "
        f"{args.budget // 2}), full budget {args.epochs} epochs, mo-asha rungs {rungs} eta "
        f"{args.eta:g}, seeds 0-{args.seeds - 1}, presets queued first and trained in full, "
        "reference = presets' "
        f"nadir (noise-free), optuna {optuna.__version__}"
    )
    print(
        f"# learning curves: chance {CHANCE}, tau {args.tau[0]:g}-{args.tau[1]:g} epochs; "
        f"noise: accuracy sd {args.acc_noise:g} per evaluation, latency "
        f"{args.latency_noise:.0%} log-normal; Spearman(acc@{rungs[0]}, acc@{args.epochs}) "
        f"over mo-asha's trials, median {statistics.median(r.rank_correlation for r in asha):.2f}"
    )
    print(
        f"# {wall:.0f} s on {args.processes} processes; sampler ask+sampling per run: "
        + ", ".join(
            f"{name} {statistics.median(r.ask_seconds for r in results if r.arm == name):.0f} s"
            for name in ARMS
        )
        + " (median)"
    )
    print()
    print("\n".join(table(results, settings)))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"settings": asdict(settings), "runs": [asdict(r) for r in results]})
        )


if __name__ == "__main__":
    main()
