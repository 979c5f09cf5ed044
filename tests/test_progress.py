"""The run's console output: a line per ended trial and the status line (search.driver.progress)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from search.driver.progress import NORMAL, QUIET, Progress
from search.worker.gate import DeviceGate, default_lock_dir
from studies.pareto import default_reference, hypervolume, pareto_mask
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


def _front(status_line: str) -> str:
    return re.search(r"front \d+, hypervolume [^ |\]]+", status_line).group(0)


def test_a_resumed_run_shows_the_front_of_the_studys_full_budget_trials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    study = _study(
        [
            (_ok(0.30, 5.0, preset="threshnet28"), TrialState.COMPLETE),
            (_ok(0.25, 9.0, preset="threshnet79"), TrialState.COMPLETE),
            (_ok(0.35, 3.0, epochs=1), TrialState.COMPLETE),  # another budget: left out
            (_ok(0.20, 2.0), TrialState.COMPLETE),  # faster, less accurate: on the front
            ({**_ok(0.9, 1.0, epochs=1), "status": "stopped"}, TrialState.PRUNED),
        ]
    )
    progress = Progress(target=6, full_epochs=2, earlier=study.get_trials(deepcopy=False))
    # reference: the presets' nadir (0.25, 9.0); boxes of (0.30, 5.0) and (0.20, 2.0)
    assert _front(progress.status(running=0)) == f"front 2, hypervolume {0.05 * 4.0:.4g}"
    progress.trial_ended("trial 5: ok", _ok(0.30, 5.0), running=0)  # a duplicate counts
    assert _front(capsys.readouterr().out.splitlines()[1]) == "front 3, hypervolume 0.2"


def test_each_ended_trial_gets_its_line_then_the_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress(target=4, full_epochs=2, verbosity=NORMAL)
    progress.trial_ended("trial 0: ok", _ok(0.3, 5.0), running=2)
    progress.trial_ended("trial 1: failed", {"status": "failed"}, running=1)
    progress.trial_ended("trial 2: infeasible", {"status": "infeasible"}, running=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "trial 0: ok"
    assert lines[1].startswith("[1/4 finished, 2 running, 0 failed | ")
    assert "ETA " in lines[1] and "front 1, hypervolume 0" in lines[1]
    assert lines[3].startswith("[2/4 finished, 1 running, 1 failed | ")
    assert lines[5].startswith("[2/4 finished")  # an infeasible config is not a finished trial


def test_the_status_line_keeps_the_front_of_the_study_trial_by_trial(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 50 trials before this run, then 250 ended one by one: ties, duplicates, other
    # budgets, failures, the presets (the reference's rule changes at the first)
    rng = np.random.default_rng(7)
    records = []
    for number in range(300):
        record = _ok(round(rng.uniform(0.3, 0.9), 2), round(rng.uniform(1.0, 10.0), 1))
        if number % 7 == 0:
            record["epochs"] = 1
        if number % 11 == 0:
            record = {"status": "failed", "error": "out of memory"}
        records.append(record)
    for number, preset in ((80, "threshnet28"), (150, "threshnet79"), (220, "threshnet95")):
        records[number] = _ok(0.25, 12.0 + number / 100, preset=preset)
    earlier = [
        (r, TrialState.COMPLETE if r["status"] == "ok" else TrialState.FAIL) for r in records[:50]
    ]
    study = _study(earlier)
    progress = Progress(target=250, full_epochs=2, earlier=study.get_trials(deepcopy=False))
    for number in range(50, 300):
        progress.trial_ended(f"trial {number}", records[number], running=0)
        rows = [r for r in records[: number + 1] if r["status"] == "ok" and r["epochs"] == 2]
        frame = pd.DataFrame(rows)
        volume = hypervolume(frame, default_reference(frame))
        expected = f"front {pareto_mask(frame).sum()}, hypervolume {volume:.4g}"
        assert _front(capsys.readouterr().out.splitlines()[1]) == expected


def test_quiet_prints_nothing_per_trial(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(target=2, full_epochs=2, verbosity=QUIET)
    progress.trial_ended("trial 0: ok", _ok(0.3, 5.0), running=0)
    progress.close()
    assert capsys.readouterr().out == ""


def test_the_status_line_says_when_latencies_were_timed_on_an_oversubscribed_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress(target=3, full_epochs=2, verbosity=NORMAL)
    progress.trial_ended("trial 0: ok", _ok(0.3, 5.0), running=1)
    progress.trial_ended("trial 1: ok", {**_ok(0.3, 5.0), "latency_oversubscribed": 1}, 0)
    first, second = capsys.readouterr().out.splitlines()[1::2]
    assert "timed so" not in first
    assert second.endswith("1 latency timed so]") and "| oversubscribed: " in second


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the kernel's lock table is Linux's")
def test_the_status_line_says_when_another_program_computes_on_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the gates' directory
    gate = DeviceGate("cpu")  # makes the gate's files, as a trial does
    lock = default_lock_dir() / "cpu.lock"
    other = subprocess.run(  # not a Ray worker of this run: another study's training
        ["sh", "-c", f"flock -s -o {lock} sleep 30 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    holder = int(other.stdout.split()[0])
    try:
        for _ in range(100):
            if Progress(target=3, full_epochs=2, local=True).status(0).find("shared") > 0:
                break
            time.sleep(0.05)
        line = Progress(target=3, full_epochs=2, local=True).status(0)
        assert f"| device shared: pid {holder} (flock " in line
        assert line.endswith("computes on cpu (timings wait for it)]")
        # on a cluster the driver cannot tell its own workers from another program's
        assert "shared" not in Progress(target=3, full_epochs=2, local=False).status(0)
    finally:
        os.kill(holder, signal.SIGKILL)
        gate.close()
