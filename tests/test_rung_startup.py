"""The default GP sampler's start-up counts trials that reached a rung (PRUNED by mo-asha)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from search.methods.samplers import STARTUP_TRIALS, make_sampler
from space import DEFAULT_SPACE, sample_params


def _study(sampler: optuna.samplers.BaseSampler, path: Path) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.create_study(
        directions=["maximize", "minimize"], sampler=sampler, storage=storage
    )


def _suggestions(study: optuna.Study, states: list[TrialState]) -> list[dict[str, Any]]:
    """Ask one trial per state, sample the product's space, tell it in that state (a
    COMPLETE trial with made-up objectives); the params of each, in order."""
    suggested = []
    for number, state in enumerate(states):
        trial = study.ask()
        suggested.append(sample_params(trial, DEFAULT_SPACE))
        if state == TrialState.COMPLETE:
            study.tell(trial, [0.5 + 0.01 * number, 1.0 + number])
        else:
            study.tell(trial, state=state)
    return suggested


def _random_stream(count: int, path: Path) -> list[dict[str, Any]]:
    """What Optuna's RandomSampler with the factory's seed suggests, ``count`` trials."""
    study = _study(optuna.samplers.RandomSampler(seed=0), path)
    return _suggestions(study, [TrialState.PRUNED] * count)


@pytest.mark.slow  # one GP fit: seconds, more on shared cores
def test_gp_models_after_startup_trials_that_reached_a_rung(tmp_path: Path) -> None:
    # mo-asha's shape: one trial in the start-up trained in full, the rest stopped at a rung
    states = [TrialState.COMPLETE] + [TrialState.PRUNED] * (STARTUP_TRIALS - 1)
    states.append(TrialState.PRUNED)  # the first trial after the start-up
    gp = _suggestions(_study(make_sampler("gp", seed=0), tmp_path / "gp.journal"), states)
    random = _random_stream(len(states), tmp_path / "random.journal")
    assert gp[:STARTUP_TRIALS] == random[:STARTUP_TRIALS]  # the start-up: random draws
    assert gp[STARTUP_TRIALS] != random[STARTUP_TRIALS]  # then the GP's own suggestion

    # Optuna's own start-up counts COMPLETE trials only: still random at the same point
    plain = optuna.samplers.GPSampler(seed=0, n_startup_trials=STARTUP_TRIALS)
    optuna_gp = _suggestions(_study(plain, tmp_path / "plain.journal"), states)
    assert optuna_gp == random


def test_startup_waits_for_a_complete_trial(tmp_path: Path) -> None:
    # All stopped at a rung: the GP would have no completed trial to model, so it waits
    states = [TrialState.PRUNED] * (STARTUP_TRIALS + 3)
    gp = _suggestions(_study(make_sampler("gp", seed=0), tmp_path / "gp.journal"), states)
    assert gp == _random_stream(len(states), tmp_path / "random.journal")


def test_failed_trials_do_not_count(tmp_path: Path) -> None:
    states = [TrialState.COMPLETE] + [TrialState.FAIL] * (STARTUP_TRIALS + 2)
    gp = _suggestions(_study(make_sampler("gp", seed=0), tmp_path / "gp.journal"), states)
    assert gp == _random_stream(len(states), tmp_path / "random.journal")


@pytest.mark.slow  # a GP fit in each of two studies
def test_fifo_study_draws_what_optunas_own_startup_draws(tmp_path: Path) -> None:
    # No trial PRUNED (fifo): the same start-up and the same modelled suggestions after it
    states = [TrialState.COMPLETE] * (STARTUP_TRIALS + 1)
    ours = _suggestions(_study(make_sampler("gp", seed=3), tmp_path / "ours.journal"), states)
    plain = optuna.samplers.GPSampler(seed=3, n_startup_trials=STARTUP_TRIALS)
    theirs = _suggestions(_study(plain, tmp_path / "plain.journal"), states)
    assert ours == theirs
