"""The searcher in-process: a trial's status becomes an Optuna state, interrupted ones come back."""

from __future__ import annotations

import csv
import errno
import functools
import math

import optuna
import pytest
from optuna.trial import TrialState

from search.optuna_bridge import RecordingOptunaSearch, suggest
from search.records import TrialsTable
from search.settings import OBJECTIVES
from search.study import StudyDirectory
from search.trial import NUMBER_KEY
from space import DEFAULT_SPACE, param_names

STUDY = "bridge"


def _searcher(directory: StudyDirectory) -> RecordingOptunaSearch:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return RecordingOptunaSearch(
        table=TrialsTable(directory.trials_path, tuple(param_names(DEFAULT_SPACE))),
        failure_hint="the Ray logs",
        space=functools.partial(suggest, space=DEFAULT_SPACE),
        metric=list(OBJECTIVES),
        mode=["max", "min"],
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name=STUDY,
        storage=directory.storage(),
    )


def _stored(directory: StudyDirectory) -> dict[int, optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=STUDY, storage=directory.storage())
    return {trial.number: trial for trial in study.get_trials()}


OK = {"status": "ok", "val_acc": 0.5, "latency_ms": 2.0, "params": 123, "error": ""}
CASES = {
    "ok": (OK, False),
    "infeasible": (
        {"status": "infeasible", "error": "params 9 > max 1", "val_acc": math.nan},
        False,
    ),
    "failed": ({"status": "failed", "error": "RuntimeError: boom"}, False),
    "worker died": (None, True),
    "interrupted": (None, False),
}


def test_each_status_maps_to_its_optuna_state_and_is_recorded(directory: StudyDirectory) -> None:
    searcher = _searcher(directory)
    configs = {}
    for name, (result, error) in CASES.items():
        configs[name] = searcher.suggest(name)
        assert configs[name][NUMBER_KEY] == len(configs) - 1
        searcher.on_trial_complete(name, result, error=error)
    trials = _stored(directory)
    number = {name: config[NUMBER_KEY] for name, config in configs.items()}

    ok = trials[number["ok"]]
    assert ok.state == TrialState.COMPLETE and ok.values == [0.5, 2.0]
    assert ok.user_attrs == OK
    infeasible = trials[number["infeasible"]]
    assert infeasible.state == TrialState.PRUNED
    assert infeasible.user_attrs == {"status": "infeasible", "error": "params 9 > max 1"}
    assert trials[number["failed"]].state == TrialState.FAIL
    assert trials[number["failed"]].user_attrs["error"] == "RuntimeError: boom"
    died = trials[number["worker died"]]
    assert died.state == TrialState.FAIL and died.user_attrs["status"] == "failed"
    assert "worker died" in died.user_attrs["error"] and "the Ray logs" in died.user_attrs["error"]

    interrupted = trials[number["interrupted"]]
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs["status"] == "interrupted"
    (queued,) = [t for t in trials.values() if t.state == TrialState.WAITING]
    assert queued.user_attrs["requeued_from"] == interrupted.number

    with open(directory.trials_path, newline="") as handle:
        rows = {int(row["number"]): row for row in csv.DictReader(handle)}
    assert {n: row["state"] for n, row in rows.items()} == {
        n: t.state.name for n, t in trials.items() if t.state != TrialState.WAITING
    }
    assert rows[number["ok"]]["val_acc"] == "0.5"
    assert rows[number["infeasible"]]["val_acc"] == ""  # NaN is not recorded


def test_the_requeued_trial_runs_with_the_same_parameters(directory: StudyDirectory) -> None:
    searcher = _searcher(directory)
    first = searcher.suggest("first")
    searcher.on_trial_complete("first", None, error=False)  # stopped before it reported
    again = searcher.suggest("again")
    assert {k: v for k, v in again.items() if k != NUMBER_KEY} == {
        k: v for k, v in first.items() if k != NUMBER_KEY
    }
    assert again[NUMBER_KEY] == first[NUMBER_KEY] + 1


def test_a_second_completion_of_the_same_trial_is_ignored(directory: StudyDirectory) -> None:
    searcher = _searcher(directory)
    searcher.suggest("a")
    searcher.on_trial_complete("a", OK)
    searcher.on_trial_complete("a", {"status": "failed", "error": "late"})
    (trial,) = _stored(directory).values()
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["status"] == "ok"


def test_a_study_that_cannot_be_written_stops_the_searcher(
    directory: StudyDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher = _searcher(directory)
    searcher.suggest("a")
    searcher.suggest("b")
    full = OSError(errno.ENOSPC, "No space left on device", "optuna.journal")

    def disk_full(*args: object) -> None:
        raise full

    monkeypatch.setattr(searcher._optuna_storage, "set_trial_user_attr", disk_full)
    searcher.on_trial_complete("a", OK)  # recording fails: kept, not raised
    assert searcher.write_error is full
    searcher.on_trial_complete("b", OK)  # nothing more is attempted
    assert searcher.suggest("c") is None  # and nothing new is started
    monkeypatch.undo()
    states = {t.number: t.state for t in _stored(directory).values()}
    assert states == {0: TrialState.RUNNING, 1: TrialState.RUNNING}  # the next run re-queues
