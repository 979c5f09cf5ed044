"""An Optuna sampler that routes each trial, when it starts, to one of several samplers.

The choice is taken once per trial (``before_trial``) and kept until the trial is told,
so trials told meanwhile by other threads cannot split one trial between two samplers;
every other call of the trial goes to the sampler chosen for it. A trial asked before
this sampler existed (told after a resume) goes to the one ``choose`` picks now.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


class RoutedSampler(BaseSampler):
    """Each trial to the sampler ``choose`` picks when it starts (see module doc)."""

    def __init__(self, samplers: Sequence[BaseSampler]) -> None:
        self._samplers = tuple(samplers)
        self._chosen: dict[int, BaseSampler] = {}  # trial number -> its sampler

    @abstractmethod
    def choose(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler:
        """The sampler for ``trial``, starting now in ``study``."""

    def _of(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler:
        return self._chosen.get(trial.number) or self.choose(study, trial)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        sampler = self._chosen[trial.number] = self.choose(study, trial)
        sampler.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._of(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._of(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        sampler = self._of(study, trial)
        return sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        sampler = self._of(study, trial)
        self._chosen.pop(trial.number, None)
        sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        for sampler in self._samplers:
            sampler.reseed_rng()
