"""A sampler that hands a study over from one Optuna sampler to another at a trial count,
and meanwhile keeps the first one to a share of the driver's time.

Optuna's GP sampler refits its Gaussian processes on every COMPLETE trial for each
suggestion, so its cost per suggestion grows steeply with the trials told; TPE's stays in
the milliseconds. ``HandoverSampler`` suggests with ``first`` while the study has fewer
than ``handover`` COMPLETE trials and with ``then`` from there on, with the whole history
(OptunaHub's AutoSampler decides the same way, on the study's COMPLETE trials). The count
is read from the study's storage when a trial starts, so a resumed study hands over at the
same count, whichever run reaches it.

Before the hand-over, ``then`` also takes a trial whenever ``first`` has spent more than
``first_share`` of the time since the sampler was built suggesting (pacing): the driver
suggests on one thread, so with many trials in flight and short trials a GP suggestion of
seconds would keep every slot that frees meanwhile waiting, and the GP would set the
study's pace. A study whose trials each take at least as long as a GP suggestion, one at a
time, never reaches the share of 0.5 (every trial is ``first``'s, as without pacing);
``first_share`` 1 never paces. Each trial's sampler is noted in the trial's system
attributes (``SAMPLER_ATTR``: the name given to it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from search.methods.routed_sampler import RoutedSampler

SAMPLER_ATTR = "handover:sampler"  # system attribute: which sampler suggested the trial


class HandoverSampler(RoutedSampler):
    """``first`` until the study has ``handover`` COMPLETE trials (within ``first_share``
    of the time, see module doc), ``then`` afterwards."""

    def __init__(
        self,
        first: BaseSampler,
        then: BaseSampler,
        *,
        handover: int,
        names: tuple[str, str] = ("first", "then"),
        first_share: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__((first, then))
        self.first, self.then, self.handover = first, then, handover
        self.first_share = first_share
        self._names = {id(first): names[0], id(then): names[1]}
        self._clock = clock
        self._since = clock()
        self.first_seconds = 0.0  # spent in first's suggestions since the sampler was built

    def _over_share(self) -> bool:
        """Whether ``first`` has spent more than its share of the time so far."""
        return self.first_seconds > self.first_share * (self._clock() - self._since)

    def sampler_for(self, study: optuna.Study) -> BaseSampler:
        """The sampler a trial starting now in ``study`` gets."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) >= self.handover or self._over_share():
            return self.then
        return self.first

    def choose(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler:
        return self.sampler_for(study)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        # Optuna offers a sampler no public way to annotate a trial; its own samplers
        # (GPSampler, AutoSampler) write through the study's storage like this (optuna<6).
        study._storage.set_trial_system_attr(
            trial._trial_id, SAMPLER_ATTR, self._names[id(self._of(study, trial))]
        )

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self._of(study, trial) is not self.first:
            return super().sample_relative(study, trial, search_space)
        started = self._clock()  # the GP's fit and acquisition: its whole suggestion
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            self.first_seconds += self._clock() - started
