"""Optuna bookkeeping of a study: finished trials, re-queueing, presets, sampler seeds.

The Optuna storage is the study's source of truth; these functions read and update it
through Optuna's public study and storage APIs.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.trial import TrialState

from space import SearchSpace, preset_points
from studies.schema import INTERRUPTED, RECORD_ATTR, trial_status

logger = logging.getLogger("search")

QUEUED_PRESET_ATTR = "queued_preset"  # user attribute of a trial queued for a preset
REQUEUED_FROM_ATTR = "requeued_from"  # user attribute of a trial queued for an interrupted one


FINISHED = ("ok", "failed", "stopped")  # statuses that count towards --trials
STOPPED = "stopped"  # status of a trial mo-asha stopped at a rung (told to Optuna as PRUNED)


def trials_by_status(study: optuna.Study) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Ended trials by their status: ok, failed, stopped (by mo-asha, at a rung),
    infeasible (interrupted ones are not ended: they are queued again). Infeasible trials
    cost no training and do not count towards --trials."""
    ended: dict[str, list[optuna.trial.FrozenTrial]] = {
        "ok": [],
        "failed": [],
        STOPPED: [],
        "infeasible": [],
    }
    done = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    for trial in study.get_trials(deepcopy=False, states=done):
        status = trial_status(trial)
        if status == STOPPED:
            ended[STOPPED].append(trial)
        elif status == "infeasible" or trial.state == TrialState.PRUNED:
            ended["infeasible"].append(trial)  # PRUNED: how earlier versions recorded it
        elif status != INTERRUPTED:
            ended["ok" if trial.state == TrialState.COMPLETE else "failed"].append(trial)
    return ended


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that trained to an end, completed or failed: what --trials counts."""
    ended = trials_by_status(study)
    return [trial for status in FINISHED for trial in ended[status]]


def requeue_trial(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    number: int,
    params: dict[str, Any],
    reason: str,
) -> None:
    """Record trial ``number`` as interrupted (state FAIL) and queue its parameters again."""
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    storage.set_trial_user_attr(trial_id, RECORD_ATTR, {"status": INTERRUPTED, "error": reason})
    study.tell(number, state=TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={REQUEUED_FROM_ATTR: number})


def requeue_interrupted(study: optuna.Study, storage: optuna.storages.BaseStorage) -> int:
    """Re-queue the trials a stopped run left RUNNING; returns how many."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        requeue_trial(
            study,
            storage,
            trial.number,
            trial.params,
            "interrupted before it finished; queued to run again",
        )
    return len(running)


def queue_presets(study: optuna.Study, space: SearchSpace) -> list[str]:
    """Queue the published presets not yet in the study (in any state); their names.

    A preset counts as present when a trial has its parameters or was queued for it.
    """
    trials = study.get_trials(deepcopy=False)
    present_params = [trial.params for trial in trials]
    queued = {trial.user_attrs.get(QUEUED_PRESET_ATTR) for trial in trials}
    points, outside = preset_points(space)
    for name, reason in outside:
        logger.warning("preset %s is not queued: %s", name, reason)
    names = []
    for name, _, params in points:
        if name not in queued and params not in present_params:
            study.enqueue_trial(params, user_attrs={QUEUED_PRESET_ATTR: name})
            names.append(name)
    return names


def sampler_seed(seed: int, run_index: int) -> int:
    """The sampler's seed for the ``run_index``-th run (1-based) of a study.

    The first run uses ``seed``; each resumed run gets its own, so a resumed run does not
    replay the first run's random suggestions (which would duplicate trials).
    """
    return seed + (run_index - 1) * 1_000_003
