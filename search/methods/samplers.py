"""The Optuna samplers a study can use, built one way for the search and its benchmark.

Every sampler sees the whole fixed-dimension space (space.sampling), so none falls back
to sampling parameters independently (and none warns about it per trial), and the
cost-cap constraints each trial carries (``Trial.set_constraint``). Which one is the default was
chosen with ``bench/sampler_efficiency.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "nsga2", "gp", "random")
DEFAULT_SAMPLER = "gp"  # chosen with bench/sampler_efficiency.py (BENCHMARKS.md)
STARTUP_TRIALS = 10  # random suggestions before a model-based sampler starts modelling


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """A multi-objective Optuna sampler by name (one of SAMPLERS)."""
    import optuna  # here, so that settings (which name the default) need no optuna

    from search.methods.rung_startup import RungStartupSampler

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
