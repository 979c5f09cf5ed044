"""The default sampler, gp-tpe: GP up to a count of COMPLETE trials, TPE from there on,
over runs of one study in a journal file and with trials in flight; and its pacing (TPE
takes a trial whenever GP has used more than its share of the time)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from search.methods.handover import SAMPLER_ATTR, HandoverSampler
from search.methods.samplers import (
    DEFAULT_SAMPLER,
    GP_SHARE,
    GP_TRIALS,
    STARTUP_TRIALS,
    make_sampler,
)
from search.setup.settings import DEFAULT_SETTINGS, StudySettings
from space import DEFAULT_SPACE, params_to_config, sample_params

# Inside GP's random start-up: the hand-over logic without a GP fit, which takes from
# seconds to a minute of CPU on a shared 2-core machine
HANDOVER = STARTUP_TRIALS - 2


def _run(path: Path, seed: int) -> optuna.Study:
    """A run of the study in the journal file ``path``, with its own gp-tpe sampler."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.create_study(
        study_name="study",
        storage=storage,
        directions=["maximize", "minimize"],
        sampler=make_sampler("gp-tpe", seed, gp_trials=HANDOVER),
        load_if_exists=True,
    )


def _ask(study: optuna.Study) -> optuna.Trial:
    trial = study.ask()
    sample_params(trial, DEFAULT_SPACE)
    return trial


def _tell(study: optuna.Study, trial: optuna.Trial) -> None:
    config = params_to_config(trial.params, DEFAULT_SPACE)
    study.tell(trial, [config.depth / 100, sum(s.transition for s in config.stages) / 1e3])


def _samplers(path: Path) -> list[str]:
    study = _run(path, seed=99)
    return [trial.system_attrs[SAMPLER_ATTR] for trial in study.get_trials()]


def test_gp_tpe_hands_over_at_the_count_across_runs_and_trials_in_flight(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.log"
    first = _run(path, seed=0)
    for _ in range(HANDOVER - 4):
        _tell(first, _ask(first))
    second = _run(path, seed=1)  # resumed before the hand-over
    for _ in range(3):
        _tell(second, _ask(second))
    assert len(second.get_trials()) == HANDOVER - 1
    # In flight at one short of the count: each is GP's, as only COMPLETE trials count.
    in_flight = [_ask(second) for _ in range(3)]
    for trial in in_flight:
        _tell(second, trial)
    for _ in range(2):
        _tell(second, _ask(second))
    third = _run(path, seed=2)  # resumed past the hand-over: TPE at once
    _tell(third, _ask(third))
    gp, tpe = "gp", "tpe"
    assert _samplers(path) == [gp] * (HANDOVER + 2) + [tpe] * 3


def test_a_resumed_study_keeps_its_recorded_hand_over() -> None:
    assert DEFAULT_SAMPLER == "gp-tpe"
    stored = DEFAULT_SETTINGS.to_dict()
    assert stored["sampler"] == "gp-tpe" and stored["gp_trials"] == GP_TRIALS
    assert StudySettings.from_dict({**stored, "gp_trials": 150}).gp_trials == 150
    before = {key: value for key, value in stored.items() if key != "gp_trials"}
    assert StudySettings.from_dict(before).gp_trials == GP_TRIALS  # a manifest from before


@pytest.mark.slow  # two GP fits: up to a minute or two on a shared 2-core machine
def test_gp_tpe_suggests_what_gp_does_up_to_the_hand_over() -> None:
    """So gp-tpe's quality up to its hand-over is gp's, measured in BENCHMARKS.md."""

    def params(name: str) -> list[dict]:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        sampler = make_sampler(name, seed=3, gp_trials=STARTUP_TRIALS + 1)
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        for _ in range(STARTUP_TRIALS + 1):  # the last one from GP's model
            _tell(study, _ask(study))
        return [trial.params for trial in study.get_trials()]

    assert params("gp-tpe") == params("gp")


class _Clock:
    """Seconds that pass only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _SlowRandom(optuna.samplers.RandomSampler):
    """Random search whose every suggestion takes ``seconds`` of ``clock``: a GP's place."""

    def __init__(self, clock: _Clock, seconds: float) -> None:
        super().__init__(seed=0)
        self.clock, self.seconds = clock, seconds

    def sample_relative(self, study, trial, search_space):
        self.clock.now += self.seconds
        return super().sample_relative(study, trial, search_space)


def _paced_study(
    trial_seconds: float, share: float, trials: int, handover: int = 1000
) -> tuple[list[str], list[tuple[float, float]]]:
    """A serial study whose suggestions by ``first`` take 1 s and whose trials take
    ``trial_seconds``: each trial's sampler, and (first's seconds, time so far) after each."""
    clock = _Clock()
    sampler = HandoverSampler(
        _SlowRandom(clock, seconds=1.0),
        optuna.samplers.RandomSampler(seed=1),
        handover=handover,
        names=("gp", "tpe"),
        first_share=share,
        clock=clock,
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    spent = []
    for _ in range(trials):
        trial = _ask(study)
        clock.now += trial_seconds
        _tell(study, trial)
        spent.append((sampler.first_seconds, clock.now))
    return [trial.system_attrs[SAMPLER_ATTR] for trial in study.get_trials()], spent


def test_pacing_never_acts_while_each_trial_lasts_as_long_as_a_gp_suggestion() -> None:
    chosen, _ = _paced_study(trial_seconds=1.0, share=GP_SHARE, trials=30)
    assert GP_SHARE == 0.5 and chosen == ["gp"] * 30


def test_pacing_keeps_the_gp_within_its_share_of_the_time_then_hands_over() -> None:
    chosen, spent = _paced_study(trial_seconds=0.25, share=GP_SHARE, trials=40, handover=30)
    # GP alone would take 1 / 1.25 = 80 % of the time; paced, within half of it, give or
    # take the one suggestion that crossed the line.
    assert all(gp <= GP_SHARE * elapsed + 1.0 for gp, elapsed in spent)
    gp, elapsed = spent[29]  # at the hand-over
    assert gp / elapsed > GP_SHARE - 0.05  # and it used its share
    assert chosen.count("gp") < 30 and chosen[:2] == ["gp", "tpe"]
    assert chosen[30:] == ["tpe"] * 10  # 30 COMPLETE trials: handed over for good


def test_a_share_of_one_never_paces_even_trials_that_take_no_time() -> None:
    chosen, _ = _paced_study(trial_seconds=0.0, share=1.0, trials=20)
    assert chosen == ["gp"] * 20
