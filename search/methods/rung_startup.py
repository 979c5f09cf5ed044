"""A model-based sampler's random start-up, counted over trials that reached a rung.

Optuna's ``GPSampler`` leaves its random start-up after ``n_startup_trials`` COMPLETE
trials. Under ``--scheduler mo-asha`` most trials are stopped at a rung and told PRUNED
(search.driver.optuna_bridge), so with eta 3 and rungs (1, 2, 4) about one trial in nine
is COMPLETE and the GP samples at random for 60-90 trials (BENCHMARKS.md, "Multi-fidelity").
``RungStartupSampler`` does the start-up itself: it samples at random until
``n_startup_trials`` trials have ended COMPLETE or PRUNED (in a multi-objective study a
PRUNED trial is one mo-asha stopped at a rung, and Optuna's ``Trial.report`` is not offered
for such studies, so the state is the record that a trial reached one), and at least one
is COMPLETE (the GP's search space is inferred from completed trials); from then on the
wrapped sampler, built with no start-up of its own, models every suggestion. Under fifo
no trial is PRUNED and the start-up is the GP's own: the same count, the same random
draws. The decision is taken once per trial, when it is asked, so trials told meanwhile
by other threads cannot split one trial between the two samplers.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.methods.routed_sampler import RoutedSampler

REACHED_A_RUNG = (TrialState.COMPLETE, TrialState.PRUNED)


def reached_a_rung(study: optuna.Study) -> tuple[int, int]:
    """(trials that ended COMPLETE or PRUNED, of them COMPLETE) in ``study``."""
    trials = study.get_trials(deepcopy=False, states=REACHED_A_RUNG)
    return len(trials), sum(t.state == TrialState.COMPLETE for t in trials)


class RungStartupSampler(RoutedSampler):
    """Random until ``n_startup_trials`` trials reached a rung, then ``model`` (which should
    have no start-up of its own: ``n_startup_trials=0``)."""

    def __init__(
        self, model: optuna.samplers.BaseSampler, n_startup_trials: int, seed: int | None
    ) -> None:
        self._model = model
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._n_startup_trials = n_startup_trials
        super().__init__((self._random, model))

    def choose(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        reached, complete = reached_a_rung(study)
        if reached < self._n_startup_trials or complete == 0:
            return self._random
        return self._model
