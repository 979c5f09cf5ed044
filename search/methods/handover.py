"""A sampler that hands a study over from one Optuna sampler to another at a trial count.

Optuna's GP sampler refits its Gaussian processes on every COMPLETE trial for each
suggestion, so its cost per suggestion grows steeply with the trials told; TPE's stays in
the milliseconds. ``HandoverSampler`` suggests with ``first`` while the study has fewer
than ``handover`` COMPLETE trials and with ``then`` from there on, with the whole history
(OptunaHub's AutoSampler decides the same way, on the study's COMPLETE trials). The count
is read from the study's storage when a trial starts, so a resumed study hands over at the
same count, whichever run reaches it. Each trial's sampler is noted in the trial's system
attributes (``SAMPLER_ATTR``: the name given to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

SAMPLER_ATTR = "handover:sampler"  # system attribute: which sampler suggested the trial


class HandoverSampler(BaseSampler):
    """``first`` until the study has ``handover`` COMPLETE trials, ``then`` afterwards."""

    def __init__(
        self,
        first: BaseSampler,
        then: BaseSampler,
        *,
        handover: int,
        names: tuple[str, str] = ("first", "then"),
    ) -> None:
        self.first, self.then, self.handover = first, then, handover
        self._names = {id(first): names[0], id(then): names[1]}
        self._chosen: dict[int, BaseSampler] = {}  # trial number -> its sampler

    def sampler_for(self, study: optuna.Study) -> BaseSampler:
        """The sampler a trial starting now in ``study`` gets."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return self.then if len(complete) >= self.handover else self.first

    def _of(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler:
        # A trial asked before this sampler existed (told after a resume) gets today's.
        return self._chosen.get(trial.number) or self.sampler_for(study)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        sampler = self._chosen[trial.number] = self.sampler_for(study)
        # Optuna offers a sampler no public way to annotate a trial; its own samplers
        # (GPSampler, AutoSampler) write through the study's storage like this (optuna<6).
        study._storage.set_trial_system_attr(
            trial._trial_id, SAMPLER_ATTR, self._names[id(sampler)]
        )
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
        self.first.reseed_rng()
        self.then.reseed_rng()
