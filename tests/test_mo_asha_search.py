"""--scheduler mo-asha end to end: a real local Ray, Ray Tune's scheduler loop, real
Optuna storage; trials stopped at a rung are recorded, told to Optuna as PRUNED, counted
and never on the front; a resumed study ranks new rung results among the earlier ones."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from conftest import search_env, smoke_command
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from search.driver.rung_scheduler import MultiObjectiveASHA, rung_results
from search.methods.mo_asha import RungSchedule
from studies.load import eligible_trials, load_study
from studies.report import write_report


def _earlier(number: int, rung_acc: float, latency: float) -> tuple[int, dict[str, object]]:
    return number, {"rung_val_accs": f"1:{rung_acc}", "latency_ms": latency}


def _rung_report(acc: float, latency: float) -> dict[str, object]:
    return {"status": "stopped", "epochs": 1, "val_acc": acc, "latency_ms": latency}


def test_the_scheduler_ranks_a_rung_report_among_earlier_runs_results() -> None:
    schedule = RungSchedule((1, 2, 4))
    earlier = [_earlier(n, 0.5 + n / 100, 1.0 - n / 100) for n in range(6)]  # one front
    dominated = _rung_report(0.3, 2.0)
    trial = SimpleNamespace(trial_id="new")  # the scheduler reads only its id
    fresh = MultiObjectiveASHA(schedule)
    assert fresh.on_trial_result(None, trial, dominated) == TrialScheduler.CONTINUE
    resumed = MultiObjectiveASHA(schedule, earlier)
    assert resumed.on_trial_result(None, trial, dominated) == TrialScheduler.STOP
    preset = {**dominated, "preset": "threshnet95"}  # recorded, but always trained in full
    assert resumed.on_trial_result(None, SimpleNamespace(trial_id="p"), preset) == (
        TrialScheduler.CONTINUE
    )
    final = {**dominated, "status": "ok", "epochs": 4}  # a final record always goes on
    assert resumed.on_trial_result(None, trial, final) == TrialScheduler.CONTINUE
    assert "1 trials stopped" in resumed.debug_string()
    assert rung_results({"rung_val_accs": "1:0.25 2:0.5"}) == [(1, 0.25), (2, 0.5)]
    assert rung_results({}) == []


@pytest.mark.slow
@pytest.mark.long  # the rule and the scheduler have fast tests of their own
def test_a_mo_asha_study_stops_trials_at_rungs_and_keeps_them_off_the_front(
    search_data_dir: Path, tmp_path: Path
) -> None:
    command = smoke_command(search_data_dir, tmp_path / "runs", "asha", 10, tmp_path / "cache")
    command += ["--scheduler", "mo-asha", "--epochs", "2", "--no-final-pass"]
    result = subprocess.run(
        command, env=search_env(), capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "runs" / "asha"
    study = load_study(root)
    trials = study.trials.set_index("number")
    stopped = trials[trials["status"] == "stopped"]
    full = trials[trials["status"] == "ok"]
    assert len(stopped) >= 1 and len(stopped) + len(full) == 10  # stopped ones count
    assert (stopped["state"] == "PRUNED").all() and (stopped["epochs"] == 1).all()
    assert (full["state"] == "COMPLETE").all() and (full["epochs"] == 2).all()
    for number, row in trials.iterrows():  # every trial passed rung 1, with its accuracy
        passed = rung_results({"rung_val_accs": row["rung_val_accs"]})
        assert [epochs for epochs, _ in passed] == [1], number
        if row["status"] == "stopped":
            assert passed[0][1] == pytest.approx(row["val_acc"], abs=1e-6)
    assert "stopped early by mo-asha" in result.stdout
    assert set(eligible_trials(study)["number"]) == set(full.index)

    optuna_study = optuna.load_study(
        study_name=study.manifest["study_name"],
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(root / "optuna.journal"))
        ),
    )
    best = {trial.number for trial in optuna_study.best_trials}
    assert best and best <= set(full.index)  # PRUNED trials are never among Optuna's best
    pruned = optuna_study.get_trials(states=(TrialState.PRUNED,))
    assert {trial.number for trial in pruned} == set(stopped.index)

    write_report(root)
    front = json.loads((root / "pareto.json").read_text())["pareto_front"]
    assert front and not set(front) & set(stopped.index)
