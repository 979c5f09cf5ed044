"""Resuming studies that a crash, a move or an older version left behind (no Ray needed:
each study already has all the finished trials it asks for)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState

from search.driver.records import TrialsTable
from search.driver.restore import restore_finished
from search.run import PROG, main
from search.setup.provenance import new_manifest
from search.setup.settings import SMOKE_SETTINGS
from search.setup.study import StudyDirectory
from search.worker.fields import config_record
from space import CostCaps, param_names, params_to_config, sample_params
from studies.export import main as export_main
from studies.report import main as report_main
from studies.schema import RECORD_ATTR, trial_status
from threshnet.cli import run_cli
from threshnet.config import ThreshNetConfig
from threshnet.costs import architecture_costs
from threshnet.presets import get_preset


def _finished_study(root: Path, data: Path) -> StudyDirectory:
    """A smoke study named after ``root`` with one finished trial and its trials.csv."""
    directory = StudyDirectory(root)
    directory.create()
    settings = dataclasses.replace(SMOKE_SETTINGS, data_dir=str(data))
    settings = dataclasses.replace(
        settings, space=dataclasses.replace(settings.space, num_classes=3)
    )
    directory.write_manifest(new_manifest(root.name, settings, None))
    study = directory.load_study(directory.storage(), root.name)
    trial = study.ask()
    trial.suggest_int("threshold", 0, 5)
    trial.set_user_attr(RECORD_ATTR, {"status": "ok", "val_acc": 0.5, "latency_ms": 2.0})
    study.tell(trial, [0.5, 2.0])
    return directory


def _resume(directory: StudyDirectory, *extra: str) -> int:
    return run_cli(
        PROG,
        main,
        [
            "--out",
            str(directory.root.parent),
            "--name",
            directory.root.name,
            "--trials",
            "1",
            "--cache-dir",
            str(directory.root.parent.parent / "cache"),
            *extra,
        ],
    )


@pytest.fixture
def study(tiny_folder: Path, tmp_path: Path) -> StudyDirectory:
    """A finished study with its table, as a finished run leaves it: a resume with nothing
    to run starts no Ray (seconds a test; a test that damages the table starts one)."""
    directory = _finished_study(tmp_path / "runs" / "s", tiny_folder)
    finished = directory.load_study(directory.storage(), "s")
    space = SMOKE_SETTINGS.space
    TrialsTable(directory.trials_path, tuple(param_names(space))).write(finished)
    return directory


def _table_rows(directory: StudyDirectory) -> list[str]:
    lines = directory.trials_path.read_text().splitlines()
    assert lines[0].startswith("number,state,status,")
    return lines[1:]


def test_a_half_written_trials_table_is_rebuilt_from_the_storage(
    study: StudyDirectory, capsys: pytest.CaptureFixture[str]
) -> None:
    study.trials_path.write_text("number,state,status\n0,COMPL")  # a crash mid-write
    assert _resume(study) == 0
    assert "0 run now" in capsys.readouterr().out
    (row,) = _table_rows(study)
    assert row.startswith("0,COMPLETE,ok,")


@pytest.mark.parametrize(
    "tail",
    [b'{"op_code": 5, "worker_id": "x", "trial_id": 0, "user', b"\x00\x00garbage\n"],
    ids=["partial-line", "garbage-line"],
)
def test_a_damaged_journal_tail_is_cut_and_the_study_resumes(
    study: StudyDirectory, tail: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    intact = study.journal_path.read_bytes()
    with open(study.journal_path, "ab") as handle:
        handle.write(tail)  # what a crash or a full disk in the middle of an append leaves
    assert _resume(study) == 0
    err = capsys.readouterr().err
    assert "unreadable line(s) from line" in err and "original kept as" in err
    repaired = study.journal_path.read_bytes()
    assert repaired.startswith(intact) and tail not in repaired  # later lines: this run's
    (copy,) = study.root.glob("optuna.journal.damaged-*")
    assert copy.read_bytes() == intact + tail
    (row,) = _table_rows(study)
    assert row.startswith("0,COMPLETE,ok,")
    assert _resume(study) == 0  # appending after the cut keeps the journal readable
    assert "unreadable" not in capsys.readouterr().err


def test_damage_in_the_middle_of_the_journal_is_named_and_repaired_on_request(
    study: StudyDirectory, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = study.journal_path.read_bytes().splitlines(keepends=True)
    damaged = [*lines[:3], b"not json\n", *lines[3:]]
    study.journal_path.write_bytes(b"".join(damaged))
    assert _resume(study) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert f"damaged at line 4 of {len(damaged)}" in error and "--repair-journal" in error
    assert study.journal_path.read_bytes() == b"".join(damaged)  # nothing changed

    assert _resume(study, "--repair-journal") == 0
    repaired = study.journal_path.read_bytes()
    assert repaired.startswith(b"".join(lines[:3])) and b"not json" not in repaired
    assert len(list(study.root.glob("optuna.journal.damaged-*"))) == 1
    # the cut lost the finished trial's completion; the table gave it back (no Ray started)
    captured = capsys.readouterr()
    assert "restored" in captured.err and "0 run now" in captured.out
    rows = _table_rows(study)  # the cut kept the trial's creation alone: retired, told anew
    assert [row.split(",")[:3] for row in rows] == [
        ["0", "FAIL", "interrupted"],
        ["1", "COMPLETE", "ok"],
    ]


@pytest.mark.parametrize("how", [shutil.move, shutil.copytree])
def test_a_moved_or_copied_study_keeps_its_trials(
    study: StudyDirectory, how, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = StudyDirectory(study.root.parent / "renamed")
    how(study.root, elsewhere.root)
    assert _resume(elsewhere) == 0
    assert "0 run now" in capsys.readouterr().out  # the finished trial counts: none retrained
    (row,) = _table_rows(elsewhere)
    assert row.startswith("0,COMPLETE,ok,")


def _rewrite_manifest(directory: StudyDirectory, change) -> None:
    manifest = json.loads(directory.manifest_path.read_text())
    change(manifest)
    directory.manifest_path.write_text(json.dumps(manifest))


def test_a_version_1_study_resumes(
    study: StudyDirectory, capsys: pytest.CaptureFixture[str]
) -> None:
    def to_version_1(manifest: dict) -> None:
        manifest["version"] = 1
        del manifest["study_name"]
        manifest["settings"]["latency"]["cpu_threads"] = None

    _rewrite_manifest(study, to_version_1)
    assert _resume(study) == 0
    assert "0 run now" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda m: m["settings"].pop("space"), "missing key(s) 'space'"),
        (lambda m: m["settings"]["latency"].update(smoothing=3), "unknown key(s) 'smoothing'"),
    ],
)
def test_settings_this_version_cannot_resume_are_refused_in_one_line(
    study: StudyDirectory, change, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _rewrite_manifest(study, change)
    before = study.manifest_path.read_bytes()
    assert _resume(study) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "cannot be resumed by this version" in error
    assert named in error
    assert study.manifest_path.read_bytes() == before


def test_a_deleted_trials_table_is_rebuilt_by_the_report(study: StudyDirectory) -> None:
    assert _resume(study) == 0
    study.trials_path.unlink()
    report = run_cli("studies.report", report_main, [str(study.root)])
    assert report == 0
    (row,) = _table_rows(study)
    assert row.startswith("0,COMPLETE,ok,")
    assert json.loads((study.root / "pareto.json").read_text())["eligible_trials"] == 0


def test_a_run_removes_the_temporaries_a_killed_run_left(study: StudyDirectory) -> None:
    stale = study.root / ".trials.csv.k1ll3d.tmp"
    fresh = study.root / ".report.html.wr1t1ng.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"x" * 1000)
    os.utime(stale, (0, 0))
    assert _resume(study) == 0
    assert not stale.exists() and fresh.exists()


def test_a_study_of_the_conditional_space_loads_reports_exports_but_is_not_extended(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _finished_study(tmp_path / "runs" / "old", tiny_folder)
    optuna_study = study.load_study(study.storage(), "old")
    trial = optuna_study.ask()  # a trial as version 1 sampled it: conditional names
    for name, value in config_to_params_v1(get_preset("threshnet28")).items():
        if isinstance(value, int):
            trial.suggest_int(name, value, value)
        else:
            trial.suggest_float(name, value, value)
    record = {
        **config_record(get_preset("threshnet28"), architecture_costs(get_preset("threshnet28"))),
        "status": "ok",
        "val_acc": 0.5,
        "latency_ms": 2.0,
        "epochs": SMOKE_SETTINGS.train.epochs,
    }
    for key, value in record.items():
        trial.set_user_attr(key, value)
    optuna_study.tell(trial, [0.5, 2.0])

    def to_space_version_1(manifest: dict) -> None:
        del manifest["settings"]["space"]["version"]

    _rewrite_manifest(study, to_space_version_1)
    assert _resume(study) == 2
    error = capsys.readouterr().err.strip()
    assert "encoding of version 1" in error and len(error.splitlines()) == 1

    assert run_cli("studies.report", report_main, [str(study.root)]) == 0
    assert "s1_growth" in study.trials_path.read_text().splitlines()[0]  # its own columns
    out = tmp_path / "configs"
    assert run_cli("studies.export", export_main, [str(study.root), "--out", str(out)]) == 0
    (exported,) = out.glob("*threshnet28.json")
    assert ThreshNetConfig.load(exported) == get_preset("threshnet28")


def config_to_params_v1(config: ThreshNetConfig) -> dict[str, object]:
    """The parameters version 1 of the space gave a config (growth or k, m if harmonic)."""
    params: dict[str, object] = {"threshold": config.threshold}
    for index, stage in enumerate(config.stages, start=1):
        params[f"s{index}_depth"] = stage.depth
        if config.is_dense(index - 1):
            params[f"s{index}_growth"] = stage.growth
        else:
            params[f"s{index}_k"] = stage.growth
            params[f"s{index}_m"] = stage.multiplier
        params[f"s{index}_transition"] = stage.transition
    return params


def test_finished_trials_a_cut_journal_lost_are_restored_from_the_table(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _finished_study(tmp_path / "runs" / "cut", tiny_folder)
    settings = SMOKE_SETTINGS
    study = directory.load_study(directory.storage(), "cut")
    for number in range(1, 5):  # four more finished trials, with full parameters
        trial = study.ask()
        params = sample_params(trial, settings.space)
        config = params_to_config(params, settings.space)
        record = {
            "status": "ok" if number != 3 else "failed",
            "val_acc": 0.3 + number / 100,
            "latency_ms": 2.0 + number,
            "epochs": settings.train.epochs,
            **config_record(config, architecture_costs(config, 32)),
        }
        if number == 3:
            record = {"status": "failed", "error": "diverged", "epochs": settings.train.epochs}
        trial.set_user_attr(RECORD_ATTR, record)
        if number == 3:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, [record["val_acc"], record["latency_ms"]])
    TrialsTable(directory.trials_path, tuple(param_names(settings.space))).write(study)
    before = {t.number: (t.state, t.values, t.params) for t in study.get_trials()}
    lines = directory.journal_path.read_bytes().splitlines(keepends=True)
    directory.journal_path.write_bytes(b"".join(lines[: int(len(lines) * 0.6)]))
    cut = directory.load_study(directory.storage(), "cut")
    assert len(cut.get_trials()) < 5  # some lost entirely, one left RUNNING

    # The resume asks for the 5 finished trials it had: none trains again (no Ray starts).
    assert _resume(directory, "--trials", "5") == 0
    err = capsys.readouterr().err
    assert "restored" in err and "not trained again" in err
    after = directory.load_study(directory.storage(), "cut")
    finished = [t for t in after.get_trials() if trial_status(t) in ("ok", "failed")]
    assert len(finished) == 5  # the five results, none trained again
    results = {json.dumps([t.state.name, t.values, t.params], sort_keys=True) for t in finished}
    expected = {json.dumps([s.name, v, p], sort_keys=True) for s, v, p in before.values()}
    assert results == expected
    failed = next(t for t in finished if t.state == TrialState.FAIL)
    assert failed.user_attrs[RECORD_ATTR]["error"] == "diverged"
    rows = [row for row in _table_rows(directory) if ",ok," in row or ",failed," in row]
    assert len(rows) == 5


def test_an_ok_row_without_its_objectives_is_not_restored_and_its_trial_runs_again(
    tiny_folder: Path, tmp_path: Path
) -> None:
    directory = _finished_study(tmp_path / "runs" / "edited", tiny_folder)
    space = SMOKE_SETTINGS.space
    study = directory.load_study(directory.storage(), "edited")
    running = study.ask()
    sample_params(running, space)
    names = tuple(param_names(space))
    TrialsTable(directory.trials_path, names).write(study)
    table = pd.read_csv(directory.trials_path, dtype=str, keep_default_na=False)
    row = table["number"] == str(running.number)
    assert table.loc[row, "status"].item() == "running"
    table.loc[row, ["state", "status", "val_acc"]] = ["COMPLETE", "ok", ""]  # edited by hand
    table.loc[row, "latency_ms"] = "3.0"
    table.to_csv(directory.trials_path, index=False)

    restored = restore_finished(
        study,
        directory.storage(),
        directory.trials_path,
        space=space,
        caps=CostCaps(),
        input_size=SMOKE_SETTINGS.train.input_size,
    )
    assert restored == 0  # nothing to tell Optuna: the trial stays for the resume to re-queue
    again = directory.load_study(directory.storage(), "edited")
    assert again.trials[running.number].state == TrialState.RUNNING
