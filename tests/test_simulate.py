"""``search.run --simulate``: the real driver with trials that sleep and return a
surrogate's objectives."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_error, search_env

from search import run as search_run
from search.methods.samplers import GP_SHARE
from search.methods.surrogates import Simulation
from search.setup.provenance import new_manifest
from search.setup.settings import DEFAULT_SETTINGS, StudySettings
from search.worker.fields import NUMBER_KEY
from search.worker.simulated import SimulatedContext, simulate_trial
from space import DEFAULT_SPACE, preset_points
from studies import schema

PRESET_PARAMS = [params for _, _, params in preset_points(DEFAULT_SPACE)[0]]


def _context(**changes: object) -> SimulatedContext:
    values: dict[str, object] = {
        "simulation": Simulation("launch", 2.0, 1.0),
        "space": DEFAULT_SPACE,
        "input_size": 32,
        "seed": 0,
        "epochs": 4,
    }
    return SimulatedContext(**{**values, **changes})  # type: ignore[arg-type]


def test_a_simulated_worker_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import ray.tune\n"
        "from search.worker.simulated import SimulatedContext, simulate_trial\n"
        "from search.methods.surrogates import Simulation\n"
        "from space import DEFAULT_SPACE, preset_points\n"
        "context = SimulatedContext(Simulation(), DEFAULT_SPACE, 32, 0, 4)\n"
        "for _, _, params in preset_points(DEFAULT_SPACE)[0]:\n"
        "    assert simulate_trial(params, context).record['status'] == 'ok'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))\n"
    )
    assert _python("-c", code).stdout.strip() == "[]"


def test_a_simulated_trial_is_reproducible_and_draws_its_duration() -> None:
    context = _context()
    params = {**PRESET_PARAMS[1], NUMBER_KEY: 7}
    first, again = simulate_trial(params, context), simulate_trial(params, context)
    assert first.seconds == again.seconds
    assert {k: v for k, v in first.record.items() if k != "worker_trial"} == {
        k: v for k, v in again.record.items() if k != "worker_trial"
    }
    record = first.record
    assert record["status"] == "ok" and record["preset"] == "threshnet79"
    assert record["device"] == "simulated" and record["epochs"] == 4
    assert 0.5 < record["val_acc"] < 1 and record["latency_ms"] > 0
    assert record["params"] == 14_371_858  # the closed forms: ThreshNet79's published count
    durations = {simulate_trial({**params, NUMBER_KEY: n}, context).seconds for n in range(50)}
    assert len(durations) == 50 and min(durations) >= 1.0 and max(durations) <= 3.0
    assert simulate_trial(params, context).rung_reports == ()  # fifo: no rungs


def test_a_simulated_trial_reports_at_mo_ashas_rungs() -> None:
    trial = simulate_trial({**PRESET_PARAMS[0], NUMBER_KEY: 3}, _context(rungs=(1, 2, 4)))
    (at_1, first), (at_2, second) = trial.rung_reports
    assert (at_1, at_2) == pytest.approx((trial.seconds / 4, trial.seconds / 2))
    assert first["status"] == second["status"] == "stopped"
    assert (first["epochs"], second["epochs"]) == (1, 2)
    assert first["val_acc"] < second["val_acc"] < trial.record["val_acc"]
    assert trial.record["rung_val_accs"] == second["rung_val_accs"]
    assert trial.record["rung_val_accs"].startswith("1:")


def test_the_simulation_is_stored_with_the_settings() -> None:
    simulated = StudySettings(
        **{**DEFAULT_SETTINGS.__dict__, "simulation": Simulation("compute", 20.0, 5.0)}
    )
    data = json.loads(json.dumps(simulated.to_dict()))
    assert data["simulation"] == {"surrogate": "compute", "seconds": 20.0, "spread": 5.0}
    assert StudySettings.from_dict(data) == simulated
    real = DEFAULT_SETTINGS.to_dict()
    assert real["simulation"] is None
    del real["simulation"]  # a manifest written before --simulate
    assert StudySettings.from_dict(real).simulation is None


def test_a_simulated_study_refuses_other_simulation_settings_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = StudySettings(
        **{**DEFAULT_SETTINGS.__dict__, "simulation": Simulation("launch", 2.0, 1.0)}
    )
    root = tmp_path / "runs" / "sim"
    root.mkdir(parents=True)
    schema.write_manifest(root, new_manifest("sim", settings, None))
    argv = ["--out", str(tmp_path / "runs"), "--name", "sim", "--simulate-seconds", "3"]
    error = cli_error("search.run", search_run.main, argv, capsys)
    assert "created with other settings (simulation.seconds: 2.0 -> 3.0" in error


def _python(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        env=search_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# The full-disk test (tests/test_search_e2e.py) runs a simulated study through Ray and
# resumes it without the flags, as CI's guard; this adds fractional CPUs and the report's
# command line, about a minute on 2 cores.
@pytest.mark.long
def test_a_simulated_study_runs_through_ray_and_resumes_simulated(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    command = ["-m", "search.run", "--out", str(out), "--name", "sim"]
    resources = ["--num-cpus", "2", "--cpus-per-trial", "0.25", "--max-concurrent", "4"]
    simulate = ["--simulate", "compute", "--simulate-seconds", "0.3,0.1", "--sampler", "tpe"]
    gp_share = ["--gp-share", "0.75"]
    first = _python(*command, *resources, *simulate, "--trials", "6", *gp_share, check=False)
    assert first.returncode == 0, first.stderr
    assert "final latency pass: skipped (a simulated study" in first.stdout
    root = out / "sim"
    rows = _rows(root / "trials.csv")
    assert len(rows) == 6 and {row["status"] for row in rows} == {"ok"}
    assert {row["device_name"] for row in rows} == {"simulated (compute surrogate)"}
    assert {row["preset"] for row in rows} >= {"threshnet28", "threshnet79", "threshnet95"}
    manifest = schema.read_manifest(root)
    assert manifest is not None
    simulation = {"surrogate": "compute", "seconds": 0.3, "spread": 0.1}
    assert manifest["settings"]["simulation"] == simulation
    # Resumed without --simulate: the stored simulation goes on.
    again = _python(*command, *resources, "--trials", "9", check=False)
    assert again.returncode == 0, again.stderr
    rows = _rows(root / "trials.csv")
    assert len(rows) == 9 and {row["device"] for row in rows} == {"simulated"}
    manifest = schema.read_manifest(root)
    assert manifest is not None and manifest["settings"]["simulation"] == simulation
    assert [run["status"] for run in manifest["runs"]] == ["finished", "finished"]
    # --gp-share is the run's, not the study's: recorded with each run's resources.
    assert [run["resources"]["gp_share"] for run in manifest["runs"]] == [0.75, GP_SHARE]
    report = _python("-m", "studies.report", str(root))
    assert "a simulated study" in report.stdout
    assert 'id="simulated">Simulated study' in (root / "report.html").read_text()
