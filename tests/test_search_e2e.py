"""End to end on CPU: a real local Ray, a tiny ImageFolder dataset, real Optuna storage."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psutil
import pytest
from conftest import SmokeStudy, fault_env, search_env, simulated_command, smoke_command

from search.setup.study import StudyDirectory
from studies.report import write_report

pytestmark = pytest.mark.slow

PUBLISHED = {"threshnet28", "threshnet79", "threshnet95"}
SPACE_PREFIXES = ("s1", "s2", "s3", "s4", "s5")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _start_and_wait_for_two(
    command: list[str], trials_csv: Path, output: int, *, one_running: bool = False
) -> tuple[subprocess.Popen[str], list[dict[str, str]]]:
    """Start a study in its own process group; return once two trials completed (and,
    with ``one_running``, another one is in flight: the storage says so, since the table
    has a row for ended trials only)."""
    process = subprocess.Popen(
        command,
        env=search_env(),
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    completed: list[dict[str, str]] = []
    running: list[optuna.trial.FrozenTrial] = []
    while time.monotonic() < deadline and (len(completed) < 2 or (one_running and not running)):
        time.sleep(0.5)
        if trials_csv.exists():
            rows = _rows(trials_csv)
            completed = [row for row in rows if row["state"] == "COMPLETE"]
            if one_running and len(completed) >= 2:
                running = _running_trials(trials_csv.parent)
    return process, completed


def _running_trials(root: Path) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(root / "optuna.journal"))
    )
    study = optuna.load_study(study_name=root.name, storage=storage)
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def test_smoke_study_end_to_end_with_a_failing_trial(smoke_study: SmokeStudy) -> None:
    result = smoke_study.result
    assert result.returncode == 0, result.stderr[-3000:]
    assert "8 finished trials (4 completed, 4 failed; 0 infeasible" in result.stdout

    study_dir = StudyDirectory(smoke_study.root)
    manifest = json.loads(study_dir.manifest_path.read_text())
    assert manifest["settings"]["seed"] == 0 and manifest["seed"] == 0
    assert manifest["settings"]["space"]["num_classes"] == 3
    assert {"torch", "optuna", "ray", "python"} <= set(manifest["versions"])
    assert manifest["git_revision"] and manifest["driver_devices"]
    assert manifest["runs"][0]["status"] == "finished"
    assert (study_dir.ray_dir / "run-001").is_dir()

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_dir.journal_path))
    )
    study = optuna.load_study(study_name="e2e", storage=storage)
    assert len(study.trials) == 8

    rows = _rows(study_dir.trials_path)
    assert [row["number"] for row in rows] == [str(n) for n in range(8)]
    by_preset = {row["preset"]: row for row in rows if row["preset"]}
    assert set(by_preset) == PUBLISHED
    for row in by_preset.values():
        assert row["state"] == "COMPLETE"
        assert 0.0 <= float(row["val_acc"]) <= 1.0
        assert float(row["latency_ms"]) > 0
        assert int(row["params"]) > 0 and int(row["macs"]) > 0
        assert row["latency_threads"] == "1" and row["device"] == "cpu"
    assert rows[3]["state"] == "FAIL" and "injected fault in trial 3" in rows[3]["error"]
    assert rows[4]["state"] == "FAIL" and "CUDA out of memory" in rows[4]["error"]
    assert rows[5]["state"] == "FAIL" and "training loss became" in rows[5]["error"]
    assert rows[6]["state"] == "FAIL" and "worker died" in rows[6]["error"]
    assert rows[7]["state"] == "COMPLETE"
    for row in rows:
        assert row["threshold"] != ""
        assert row["s1_depth"] != "" and row["s5_transition"] != ""
    # Warm workers: two trials at a time ran eight, so some ran in a worker that had run
    # one before (it kept its data), and after trial 6's worker died the study went on.
    worker_trials = [int(row["worker_trial"]) for row in rows if row["worker_trial"]]
    assert max(worker_trials) >= 2, worker_trials

    again = subprocess.run(
        smoke_study.command,
        env=search_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 run now" in again.stdout
    assert _rows(study_dir.trials_path) == rows


@pytest.mark.long  # kill -9 and resume: also in the PostgreSQL cluster test, which stays in CI
def test_killed_study_resumes_without_rerunning_finished_trials(
    search_data_dir: Path, tmp_path: Path
) -> None:
    command = smoke_command(search_data_dir, tmp_path / "runs", "killed", 5, tmp_path / "cache")
    command.append("--no-final-pass")  # the final pass is the smoke study's to test
    trials_csv = tmp_path / "runs" / "killed" / "trials.csv"
    process, completed = _start_and_wait_for_two(command, trials_csv, subprocess.DEVNULL)
    os.killpg(process.pid, signal.SIGKILL)  # the driver; Ray's own processes share its fate
    process.wait(60)
    assert len(completed) >= 2, "the study did not finish two trials before the kill"

    result = subprocess.run(
        command, env=search_env(), capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _rows(trials_csv)
    finished = [
        row
        for row in rows
        if row["state"] in ("COMPLETE", "FAIL", "PRUNED") and row["status"] != "interrupted"
    ]
    assert len(finished) == 5
    by_number = {row["number"]: row for row in rows}
    for before in completed:  # kept, identical, and not trained again
        after = by_number[before["number"]]
        for column in ("state", "val_acc", "latency_ms", "datetime_start", "config_json"):
            assert after[column] == before[column]
        same_config = [
            row
            for row in rows
            if row["config_json"] == before["config_json"] and row["status"] == "ok"
        ]
        assert len(same_config) == 1
    assert {row["preset"] for row in rows if row["status"] == "ok"} >= PUBLISHED


def _ctrl_c(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGINT)  # a terminal sends SIGINT to the process group


def _sigterm(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)  # timeout, kill and schedulers: the driver alone


@pytest.mark.parametrize(
    ("stop", "status"),
    [
        # Ctrl-C takes SIGTERM's path (SIGTERM is turned into SIGINT): only its status differs
        pytest.param(_ctrl_c, 130, marks=pytest.mark.long, id="ctrl-c"),
        pytest.param(_sigterm, 143, id="sigterm"),
    ],
)
def test_a_stopped_run_ends_cleanly_and_the_same_command_resumes(
    tmp_path: Path, stop, status: int
) -> None:
    # The driver's stop and resume, on simulated trials; a stop signal reaching training
    # workers is the next test's, on real ones.
    command = simulated_command(tmp_path / "runs", "ctrlc", 6)
    study_dir = StudyDirectory(tmp_path / "runs" / "ctrlc")
    process, completed = _start_and_wait_for_two(
        command, study_dir.trials_path, subprocess.PIPE, one_running=True
    )
    stopped_at = time.monotonic()
    stop(process)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == status, output[-3000:]
    assert "Traceback" not in output
    if status == 143:  # a cluster's grace period: Kubernetes gives 30 s
        assert time.monotonic() - stopped_at <= 10, "SIGTERM must end the run within 10 s"
        assert "search.run: stopped by SIGTERM" in output
    assert "Ray was signalled too" not in output  # the driver alone was
    if "Ray did not stop in time" in output:  # Tune's stop outlasted the deadline (busy cores):
        _resumes_without_training_finished_trials_again(command, study_dir, completed, 6)
        return
    # The summary's own lines, or the SIGTERM watch's when it ends Ray's teardown ("Ray is
    # shut down"): either way after the run's records were written.
    assert "rerun the same command to resume" in output
    assert json.loads(study_dir.manifest_path.read_text())["runs"][-1]["status"] == "stopped"

    rows = _rows(study_dir.trials_path)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_dir.journal_path))
    )
    study = optuna.load_study(study_name="ctrlc", storage=storage)
    started = {t.number: t.state.name for t in study.trials if t.state.name != "WAITING"}
    assert {int(r["number"]): r["state"] for r in rows} == started  # table == storage
    assert "RUNNING" not in started.values()
    interrupted = [r for r in rows if r["status"] == "interrupted"]
    assert interrupted, "a trial was in flight at Ctrl-C, so one must be marked interrupted"
    for row in interrupted:
        assert row["state"] == "FAIL"
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) >= len(interrupted)

    resumed = subprocess.run(
        command, env=search_env(), capture_output=True, text=True, timeout=900, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = _rows(study_dir.trials_path)
    finished = [r for r in final if r["status"] in ("ok", "failed", "infeasible")]
    assert len(finished) == 6
    by_number = {r["number"]: r for r in final}
    for before in completed:
        assert by_number[before["number"]]["val_acc"] == before["val_acc"]

    def params(row: dict[str, str]) -> tuple[str, ...]:
        return tuple(v for k, v in row.items() if k == "threshold" or k[:2] in SPACE_PREFIXES)

    for row in interrupted:  # its parameters ran again, once, to completion
        rerun = [r for r in final if params(r) == params(row) and r["status"] == "ok"]
        assert len(rerun) == 1, (row, rerun)


def _processes_in_session(session: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


# Real trainings, 40-60 s on 2 cores; in CI a SIGTERM's stop is the test above's (the
# driver alone, simulated trials), and this one, the whole group's, runs with -m long.
@pytest.mark.long
def test_a_sigterm_to_the_process_group_ends_the_run_in_seconds_and_leaves_no_ray_process(
    search_data_dir: Path, tmp_path: Path
) -> None:
    # What Kubernetes, SLURM's scancel, systemd and docker stop do: SIGTERM to every process
    # of the group, the Ray head that the driver started included.
    command = smoke_command(search_data_dir, tmp_path / "runs", "group", 5, tmp_path / "cache")
    command.append("--no-final-pass")  # the final pass is the smoke study's to test
    study_dir = StudyDirectory(tmp_path / "runs" / "group")
    process, _ = _start_and_wait_for_two(
        command, study_dir.trials_path, subprocess.PIPE, one_running=True
    )
    session = os.getsid(process.pid)
    assert len(_processes_in_session(session)) > 3  # the driver and Ray's processes
    stopped_at = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output[-3000:]
    assert time.monotonic() - stopped_at <= 10, output[-3000:]
    assert "search.run: stopped by SIGTERM" in output
    assert "rerun the same command" in output
    assert "Traceback" not in output
    deadline = time.monotonic() + 10
    while _processes_in_session(session) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_in_session(session) == []
    # Resuming a study whose driver died with trials in flight (they stay RUNNING and are
    # queued again) is the cluster test's, after a kill -9 (tests/test_search_cluster.py)


def _resumes_without_training_finished_trials_again(
    command: list[str], study_dir: StudyDirectory, completed: list[dict[str, str]], trials: int
) -> None:
    resumed = subprocess.run(
        command, env=search_env(), capture_output=True, text=True, timeout=900, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = {row["number"]: row for row in _rows(study_dir.trials_path)}
    ended = [r for r in final.values() if r["status"] in ("ok", "failed", "infeasible")]
    assert len(ended) == trials
    for before in completed:  # kept, and not trained again
        assert final[before["number"]]["val_acc"] == before["val_acc"]
        same = [r for r in final.values() if r["config_json"] == before["config_json"]]
        assert len([r for r in same if r["status"] == "ok"]) == 1


def _kill_processes_mentioning(text: str) -> None:
    """Kill the processes whose command line mentions ``text``, and their children."""
    found = [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(text in part for part in process.info["cmdline"] or [])
        and process.pid != os.getpid()
    ]
    every = {one for process in found for one in [process, *process.children(recursive=True)]}
    for process in every:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(list(every), timeout=30)


@contextlib.contextmanager
def _ray_start_cluster() -> Iterator[dict[str, str]]:
    """A one-CPU cluster started with `ray start --head` in a temporary directory of its
    own, meanwhile; the environment of a command run beside it (that directory as
    RAY_TMPDIR, where Ray's address lookup looks)."""
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths
    env = search_env(RAY_TMPDIR=ray_tmp)
    ray_cli = str(Path(sys.executable).with_name("ray"))
    with socket.socket() as probe:  # a free port: 6379 may be another cluster's
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    head = [ray_cli, "start", "--head", "--port", str(port), "--num-cpus", "1"]
    head += ["--include-dashboard", "false"]
    try:
        subprocess.run(head, env=env, capture_output=True, check=True, timeout=120)
        yield env
    finally:  # that cluster's processes only (`ray stop` would stop every Ray here)
        _kill_processes_mentioning(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_full_disk_stops_the_run_in_one_line_and_a_rerun_keeps_every_finished_trial(
    tmp_path: Path,
) -> None:
    # The driver's writes fail; simulated trials give it the same records in seconds (and
    # the rerun is the simulation's resume through Ray: tests/test_simulate.py has the rest).
    command = simulated_command(tmp_path / "runs", "full", 6, seconds="0.5,0.2")
    study_dir = StudyDirectory(tmp_path / "runs" / "full")
    full = subprocess.run(
        [*command, "-q"],  # only the product's errors and summary, none of Ray's tracebacks
        env=fault_env(THRESHNET_DISK_FULL_AT_BYTES="30000"),  # about four trials' records
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert full.returncode == 3, full.stderr[-3000:]
    assert full.stdout == ""
    assert all(line.startswith("search") for line in full.stderr.splitlines()), full.stderr
    (error,) = [line for line in full.stderr.splitlines() if "error:" in line]
    assert "no space left on the device writing" in error and "optuna.journal" in error
    journal = study_dir.journal_path.read_bytes()
    assert len(journal) >= 30000 and not journal.endswith(b"\n")  # the last append cut short
    before = {row["number"]: row for row in _rows(study_dir.trials_path)}
    completed = [row for row in before.values() if row["state"] == "COMPLETE"]
    assert completed, "no trial finished before the disk filled"

    # Rerun as a user would, without the simulation's flags: the stored simulation goes on.
    # And beside a cluster that `ray start` left on this machine: Ray's address lookup finds
    # the latest one (by its temporary directory), and ray.init(num_cpus=...) would join it
    # and refuse num_cpus; a local study starts its own Ray.
    unflagged = command[:]
    del unflagged[unflagged.index("--simulate") : unflagged.index("--simulate-seconds") + 2]
    with _ray_start_cluster() as env:
        again = subprocess.run(
            unflagged, env=env, capture_output=True, text=True, timeout=900, check=False
        )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "unreadable line(s)" in again.stderr  # the cut-short append was cut off
    after = {row["number"]: row for row in _rows(study_dir.trials_path)}
    for row in completed:  # kept, identical, not retrained
        assert after[row["number"]] == row
    finished = [r for r in after.values() if r["status"] in ("ok", "failed", "infeasible")]
    assert len(finished) == 6
    assert {row["device"] for row in finished} == {"simulated"}
    manifest = json.loads(study_dir.manifest_path.read_text())
    assert manifest["settings"]["simulation"] == {
        "surrogate": "compute",
        "seconds": 0.5,
        "spread": 0.2,
    }
    write_report(study_dir.root)
    assert 'id="simulated">Simulated study' in (study_dir.root / "report.html").read_text()
