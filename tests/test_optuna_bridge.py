"""The searcher in-process: a trial's status becomes an Optuna state, interrupted ones come back."""

from __future__ import annotations

import csv
import errno
import math

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search.driver.optuna_bridge import RecordingOptunaSearch
from search.driver.records import TrialsTable
from search.methods.feasibility import MAX_INFEASIBLE_IN_A_ROW, MAX_TOO_SLOW_IN_A_ROW
from search.setup.settings import OBJECTIVES
from search.setup.study import StudyDirectory
from search.worker.fields import NUMBER_KEY
from space import DEFAULT_SPACE, CostCaps, param_names, params_to_config
from studies.schema import RECORD_ATTR, trial_record, trial_status
from threshnet.cli import UserError
from threshnet.costs import architecture_costs

STUDY = "bridge"


def _searcher(
    directory: StudyDirectory, caps: CostCaps | None = None, target: int | None = None
) -> RecordingOptunaSearch:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return RecordingOptunaSearch(
        table=TrialsTable(directory.trials_path, tuple(param_names(DEFAULT_SPACE))),
        failure_hint="the Ray logs",
        space=DEFAULT_SPACE,
        caps=caps or CostCaps(),
        input_size=32,
        target=target,
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
    "failed with NaN": (
        {"status": "failed", "error": "no val_acc", "val_acc": math.nan},
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
    assert ok.user_attrs == {RECORD_ATTR: OK}  # one storage write for the whole record
    nan = trials[number["failed with NaN"]]
    assert nan.state == TrialState.FAIL
    assert trial_record(nan) == {"status": "failed", "error": "no val_acc"}  # NaN not recorded
    assert trials[number["failed"]].state == TrialState.FAIL
    assert trial_record(trials[number["failed"]])["error"] == "RuntimeError: boom"
    died = trial_record(trials[number["worker died"]])
    assert trials[number["worker died"]].state == TrialState.FAIL and died["status"] == "failed"
    assert "worker died" in died["error"] and "the Ray logs" in died["error"]

    interrupted = trials[number["interrupted"]]
    assert interrupted.state == TrialState.FAIL
    assert trial_status(interrupted) == "interrupted"
    (queued,) = [t for t in trials.values() if t.state == TrialState.WAITING]
    assert queued.user_attrs["requeued_from"] == interrupted.number

    with open(directory.trials_path, newline="") as handle:
        rows = {int(row["number"]): row for row in csv.DictReader(handle)}
    assert {n: row["state"] for n, row in rows.items()} == {
        n: t.state.name for n, t in trials.items() if t.state != TrialState.WAITING
    }
    assert rows[number["ok"]]["val_acc"] == "0.5"
    assert rows[number["failed with NaN"]]["val_acc"] == ""


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
    assert trial.state == TrialState.COMPLETE and trial_status(trial) == "ok"


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
    assert searcher.abort is full
    searcher.on_trial_complete("b", OK)  # nothing more is attempted
    assert searcher.suggest("c") is None  # and nothing new is started
    monkeypatch.undo()
    states = {t.number: t.state for t in _stored(directory).values()}
    assert states == {0: TrialState.RUNNING, 1: TrialState.RUNNING}  # the next run re-queues


def test_infeasible_configs_are_recorded_with_constraints_and_never_handed_out(
    directory: StudyDirectory,
) -> None:
    cap = 12_000_000  # about half of the space's configs have more parameters
    searcher = _searcher(directory, CostCaps(max_params=cap))
    handed_out = [searcher.suggest(f"t{index}") for index in range(8)]
    for config in handed_out:
        assert architecture_costs(params_to_config(config, DEFAULT_SPACE)).params <= cap
    trials = _stored(directory)
    infeasible = [t for t in trials.values() if trial_status(t) == "infeasible"]
    assert infeasible, "no suggested config broke the cap"
    for trial in infeasible:
        assert trial.state == TrialState.COMPLETE  # so constrained samplers learn from it
        record = trial_record(trial)
        assert record["params"] > cap and "> max 12,000,000" in record["error"]
    assert len(trials) == 8 + len(infeasible)
    for index in range(8):
        searcher.on_trial_complete(f"t{index}", {**OK, "latency_ms": 1.0 + index})
    study = optuna.load_study(study_name=STUDY, storage=directory.storage())
    best = {trial.number for trial in study.best_trials}
    assert best and not best & {trial.number for trial in infeasible}  # constraints count


def test_caps_that_leave_nothing_stop_the_search_with_one_line(
    directory: StudyDirectory,
) -> None:
    searcher = _searcher(directory, CostCaps(max_params=1000))
    assert searcher.suggest("a") is None
    assert isinstance(searcher.abort, UserError)
    assert "in a row broke the cost caps" in str(searcher.abort)
    assert len(_stored(directory)) == MAX_INFEASIBLE_IN_A_ROW


def test_the_latency_cap_is_a_constraint_and_infeasible_trials_do_not_count(
    directory: StudyDirectory,
) -> None:
    searcher = _searcher(directory, CostCaps(max_latency_ms=4.0), target=2)
    searcher.suggest("fast")
    searcher.suggest("slow")
    assert searcher.suggest("waits") is None  # two in flight can reach the target
    searcher.on_trial_complete("fast", OK)  # 2.0 ms
    too_slow = {"status": "infeasible", "error": "latency 8.000 ms > max 4 ms", "latency_ms": 8.0}
    searcher.on_trial_complete("slow", too_slow)
    assert searcher.finished == 1
    third = searcher.suggest("third")  # the infeasible one did not count: one more
    assert third is not None
    searcher.on_trial_complete("third", OK)
    assert searcher.suggest("fourth") == Searcher.FINISHED

    trials = _stored(directory)
    fast, slow = trials[0], trials[1]
    assert fast.state == TrialState.COMPLETE and fast.constraints == {"latency": -0.5}
    assert slow.state == TrialState.COMPLETE and slow.constraints == {"latency": 1.0}
    assert trial_status(slow) == "infeasible"
    study = optuna.load_study(study_name=STUDY, storage=directory.storage())
    assert 1 not in {trial.number for trial in study.best_trials}


def test_a_latency_cap_nothing_meets_stops_the_run_with_one_line(
    directory: StudyDirectory,
) -> None:
    searcher = _searcher(directory, CostCaps(max_latency_ms=0.001), target=5)
    too_slow = {"status": "infeasible", "error": "latency 3.000 ms > max 0.001 ms"}
    for index in range(MAX_TOO_SLOW_IN_A_ROW):
        assert searcher.suggest(f"t{index}") is not None
        searcher.on_trial_complete(f"t{index}", {**too_slow, "latency_ms": 3.0 + index})
    assert isinstance(searcher.abort, UserError)
    assert "slower than --max-latency-ms 0.001 (the fastest measured: 3.000 ms)" in str(
        searcher.abort
    )
    assert searcher.suggest("next") is None


def test_a_multi_line_error_is_recorded_on_one_line(directory: StudyDirectory) -> None:
    searcher = _searcher(directory)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"status": "failed", "error": "RuntimeError: boom\n  at x"})
    (trial,) = _stored(directory).values()
    assert trial_record(trial)["error"] == "RuntimeError: boom at x"
    assert len(directory.trials_path.read_text().splitlines()) == 2  # header + one row
