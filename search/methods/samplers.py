"""The Optuna samplers a study can use, built one way for the search and its benchmark.

Every sampler sees the whole fixed-dimension space (space.sampling), so none falls back
to sampling parameters independently (and none warns about it per trial), and the
cost-cap constraints each trial carries (``Trial.set_constraint``). The default, gp-tpe
(search.methods.handover), was chosen with ``bench/sampler_efficiency.py`` (quality) and
``bench/sampler_scale.py`` (cost at 1,000 trials, where to hand over; BENCHMARKS.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("gp-tpe", "tpe", "nsga2", "gp", "random")
DEFAULT_SAMPLER = "gp-tpe"  # chosen with bench/sampler_efficiency.py, bench/sampler_scale.py
STARTUP_TRIALS = 10  # random suggestions before a model-based sampler starts modelling
# gp-tpe: COMPLETE trials after which GP hands the study over to TPE; GP's cost per
# suggestion grows steeply with the trials told, and its lead over TPE was made by then
# (bench/sampler_scale.py, BENCHMARKS.md "Sampler at scale")
GP_TRIALS = 200
# gp-tpe: the most of the driver's time GP's suggestions may take before the hand-over;
# past it, trials go to TPE until GP is back within it (search.methods.handover; measured
# with bench/driver_scale.py, BENCHMARKS.md "Scale")
GP_SHARE = 0.5


def make_sampler(
    name: str,
    seed: int,
    *,
    gp_trials: int = GP_TRIALS,
    gp_share: float = GP_SHARE,
    clock: Callable[[], float] = time.perf_counter,
) -> optuna.samplers.BaseSampler:
    """A multi-objective Optuna sampler by name (one of SAMPLERS); ``gp_trials``: where
    gp-tpe hands over from GP to TPE (COMPLETE trials in the study); ``gp_share``: the most
    of the time, by ``clock``, that gp-tpe's GP may take before that (1: no limit)."""
    import optuna  # here, so that settings (which name the default) need no optuna

    from search.methods.rung_startup import RungStartupSampler

    if name == "gp-tpe":
        from search.methods.handover import HandoverSampler

        return HandoverSampler(
            make_sampler("gp", seed),
            make_sampler("tpe", seed),
            handover=gp_trials,
            names=("gp", "tpe"),
            first_share=gp_share,
            clock=clock,
        )
    if name == "tpe":
        # Multivariate TPE models the parameters jointly; the constant liar keeps trials
        # in flight from being suggested twice.
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            constant_liar=True,
            n_startup_trials=STARTUP_TRIALS,
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "gp":
        # The start-up counts trials that reached a rung, PRUNED by mo-asha included
        # (search.methods.rung_startup); the GP itself models from the first suggestion after.
        model = optuna.samplers.GPSampler(seed=seed, n_startup_trials=0)
        return RungStartupSampler(model, STARTUP_TRIALS, seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
