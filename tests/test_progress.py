"""The run's console output: a line per ended trial and the status line (search.driver.progress)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search.driver.progress import NORMAL, QUIET, Progress, front_summary
from studies.schema import RECORD_ATTR


def _study(records: list[tuple[dict[str, object], TrialState]]) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for record, state in records:
        trial = study.ask()
        trial.set_user_attr(RECORD_ATTR, record)
        values = [record["val_acc"], record["latency_ms"]] if state == TrialState.COMPLETE else None
        study.tell(trial, values, state=None if values else state)
    return study


def _ok(acc: float, ms: float, epochs: int = 2, preset: str = "") -> dict[str, object]:
    return {"status": "ok", "val_acc": acc, "latency_ms": ms, "epochs": epochs, "preset": preset}


def test_the_front_summary_counts_full_budget_trials_only() -> None:
    study = _study(
        [
            (_ok(0.30, 5.0, preset="threshnet28"), TrialState.COMPLETE),
            (_ok(0.25, 9.0, preset="threshnet79"), TrialState.COMPLETE),
            (_ok(0.35, 3.0, epochs=1), TrialState.COMPLETE),  # another budget: left out
            (_ok(0.20, 2.0), TrialState.COMPLETE),  # faster, less accurate: on the front
            ({**_ok(0.9, 1.0, epochs=1), "status": "stopped"}, TrialState.PRUNED),
        ]
    )
    size, volume = front_summary(study, full_epochs=2)
    assert size == 2
    # reference: the presets' nadir (0.25, 9.0); boxes of (0.30, 5.0) and (0.20, 2.0)
    assert volume == pytest.approx((0.30 - 0.25) * (9.0 - 5.0))


def test_each_ended_trial_gets_its_line_then_the_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    study = _study([(_ok(0.3, 5.0, preset="threshnet28"), TrialState.COMPLETE)])
    progress = Progress(target=4, full_epochs=2, verbosity=NORMAL)
    progress.trial_ended("trial 0: ok", _ok(0.3, 5.0), study, running=2)
    progress.trial_ended("trial 1: failed", {"status": "failed"}, study, running=1)
    progress.trial_ended("trial 2: infeasible", {"status": "infeasible"}, study, running=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "trial 0: ok"
    assert lines[1].startswith("[1/4 finished, 2 running, 0 failed | ")
    assert "ETA " in lines[1] and "front 1, hypervolume 0" in lines[1]
    assert lines[3].startswith("[2/4 finished, 1 running, 1 failed | ")
    assert lines[5].startswith("[2/4 finished")  # an infeasible config is not a finished trial


def test_quiet_prints_nothing_per_trial(capsys: pytest.CaptureFixture[str]) -> None:
    study = _study([])
    progress = Progress(target=2, full_epochs=2, verbosity=QUIET)
    progress.trial_ended("trial 0: ok", _ok(0.3, 5.0), study, running=0)
    progress.close()
    assert capsys.readouterr().out == ""


def test_the_status_line_says_when_latencies_were_timed_on_an_oversubscribed_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    study = _study([(_ok(0.3, 5.0), TrialState.COMPLETE)])
    progress = Progress(target=3, full_epochs=2, verbosity=NORMAL)
    progress.trial_ended("trial 0: ok", _ok(0.3, 5.0), study, running=1)
    progress.trial_ended("trial 1: ok", {**_ok(0.3, 5.0), "latency_oversubscribed": 1}, study, 0)
    first, second = capsys.readouterr().out.splitlines()[1::2]
    assert "timed so" not in first
    assert second.endswith("1 latency timed so]") and "| oversubscribed: " in second
