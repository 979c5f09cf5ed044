"""A simulated trial (``python -m search.run --simulate``): the real driver's path with
trials that sleep for a drawn duration and return a surrogate's objectives.

The objectives come from the config's closed-form costs (search.methods.surrogates),
with observation noise; the duration and the noise are drawn from the study's seed and
the trial's number, so a trial gives the same result whenever it runs. Under
``--scheduler mo-asha`` a simulated trial reports at each epoch rung after its share of
the duration, with the full accuracy less 0.05 x the budget not yet spent. Nothing here
imports torch (a test checks it): a worker holds the interpreter, Ray and a config's
arithmetic, so dozens fit on one machine.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from search.methods.surrogates import SURROGATES, Simulation, features, observed
from search.worker.fields import NUMBER_KEY, config_record, node_name
from space import SearchSpace, params_to_config
from threshnet.closed_form import static_costs

EARLY_PENALTY = 0.05  # accuracy lost at a rung, times the fraction of epochs not yet trained
_trials_in_this_process = itertools.count(1)


@dataclass(frozen=True)
class SimulatedContext:
    """What every simulated trial needs besides its parameters (sent to the workers)."""

    simulation: Simulation
    space: SearchSpace
    input_size: int
    seed: int
    epochs: int  # the full budget, recorded as a trial's epochs
    rungs: tuple[int, ...] = ()  # mo-asha's rungs (the last is the full budget); () for fifo
    objectives: tuple[str, ...] = ("val_acc", "latency_ms")  # NaN in a failed trial's result


@dataclass(frozen=True)
class SimulatedTrial:
    """A simulated trial's outcome: its final record, how long it lasts, and the records
    it reports at mo-asha's rungs before (seconds since its start, record)."""

    record: dict[str, Any]
    seconds: float
    rung_reports: tuple[tuple[float, dict[str, Any]], ...] = ()


def simulate_trial(params: dict[str, Any], context: SimulatedContext) -> SimulatedTrial:
    """The outcome of the trial with ``params``, without waiting for it (a config the
    closed forms reject gives a failed record)."""
    simulation = context.simulation
    number = int(params.get(NUMBER_KEY, -1))
    seed = context.seed + max(number, 0)
    rng = random.Random(seed)
    seconds = simulation.duration(rng)
    record: dict[str, Any] = {
        "status": "failed",
        "error": "",
        "number": number,
        "node": node_name(),
        "device": "simulated",
        "device_name": f"simulated ({simulation.surrogate} surrogate)",
        "seed": seed,
        "worker_trial": next(_trials_in_this_process),
        "trial_seconds": seconds,
    }
    try:
        config = params_to_config(params, context.space)
        costs = static_costs(config, context.input_size)
        truth = SURROGATES[simulation.surrogate](features(config, context.input_size))
    except ValueError as error:
        record["error"] = f"ValueError: {error}"
        return SimulatedTrial(record, seconds)
    record.update(config_record(config, costs))
    val_acc, latency_ms = observed(truth, rng)
    record.update(
        flops=costs.flops,
        activation_mb=costs.activation_mb,
        latency_ms=latency_ms,
        val_acc=val_acc,
        epochs=context.epochs,
        status="ok",
    )
    rung_reports = tuple(_rung_reports(record, context, seconds))
    if rung_reports:
        record["rung_val_accs"] = rung_reports[-1][1]["rung_val_accs"]
    return SimulatedTrial(record, seconds, rung_reports)


def _rung_reports(
    record: dict[str, Any], context: SimulatedContext, seconds: float
) -> Iterator[tuple[float, dict[str, Any]]]:
    passed: list[str] = []
    for rung in context.rungs[:-1]:
        fraction = rung / context.epochs
        accuracy = record["val_acc"] - EARLY_PENALTY * (1 - fraction)
        passed.append(f"{rung}:{accuracy:.6g}")
        yield (
            fraction * seconds,
            {
                **record,
                "status": "stopped",
                "error": f"stopped by mo-asha after {rung} of {context.epochs} epochs",
                "epochs": rung,
                "val_acc": accuracy,
                "rung_val_accs": " ".join(passed),
                "trial_seconds": fraction * seconds,
            },
        )


def simulated_trainable(config: dict[str, Any], context: SimulatedContext) -> None:
    """Ray Tune's function trainable for a simulated trial: sleep, report."""
    from ray import tune

    started = time.monotonic()
    trial = simulate_trial(config, context)
    for at, record in (*trial.rung_reports, (trial.seconds, trial.record)):
        time.sleep(max(0.0, started + at - time.monotonic()))
        tune.report({name: float("nan") for name in context.objectives} | record)
