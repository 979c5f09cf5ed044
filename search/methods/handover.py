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

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from search.methods.routed_sampler import RoutedSampler

SAMPLER_ATTR = "handover:sampler"  # system attribute: which sampler suggested the trial


class HandoverSampler(RoutedSampler):
    """``first`` until the study has ``handover`` COMPLETE trials, ``then`` afterwards."""

    def __init__(
        self,
        first: BaseSampler,
        then: BaseSampler,
        *,
        handover: int,
        names: tuple[str, str] = ("first", "then"),
    ) -> None:
        super().__init__((first, then))
        self.first, self.then, self.handover = first, then, handover
        self._names = {id(first): names[0], id(then): names[1]}

    def sampler_for(self, study: optuna.Study) -> BaseSampler:
        """The sampler a trial starting now in ``study`` gets."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return self.then if len(complete) >= self.handover else self.first

    def choose(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler:
        return self.sampler_for(study)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        # Optuna offers a sampler no public way to annotate a trial; its own samplers
        # (GPSampler, AutoSampler) write through the study's storage like this (optuna<6).
        study._storage.set_trial_system_attr(
            trial._trial_id, SAMPLER_ATTR, self._names[id(self._of(study, trial))]
        )
