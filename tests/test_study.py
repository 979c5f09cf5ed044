"""Study bookkeeping without Ray: resume accounting, presets queue, settings on resume."""

from __future__ import annotations

import optuna
import pytest

from search.driver.bookkeeping import (
    QUEUED_PRESET_ATTR,
    finished_trials,
    queue_presets,
    requeue_interrupted,
)
from search.driver.records import TrialsTable
from search.run import PROG, build_settings, main
from search.setup.settings import DEFAULT_SETTINGS
from search.setup.study import StudyDirectory
from space import config_to_params, param_names, sample_params
from studies.schema import trial_status
from threshnet.cli import UserError, run_cli
from threshnet.presets import get_preset


def _params(name: str) -> dict:
    return config_to_params(get_preset(name), DEFAULT_SETTINGS.space)


def test_interrupted_trials_are_failed_and_queued_again(directory: StudyDirectory) -> None:
    storage = directory.storage()
    study = directory.load_study(storage, "study")
    done = study.ask()
    done.suggest_int("threshold", 0, 5)
    study.tell(done, [0.5, 1.0])
    running = study.ask()
    running.suggest_int("threshold", 0, 5)
    running.suggest_int("s1_depth", 1, 12)
    reopened = directory.load_study(
        directory.storage(), "study"
    )  # as a new run sees it after a kill
    assert requeue_interrupted(reopened, directory.storage()) == 1
    states = {t.number: t for t in reopened.get_trials()}
    assert states[running.number].state == optuna.trial.TrialState.FAIL
    assert trial_status(states[running.number]) == "interrupted"
    assert [t.number for t in finished_trials(reopened)] == [done.number]
    rerun = reopened.ask()  # the queued copy comes first, with the same parameters
    assert rerun.suggest_int("threshold", 0, 5) == running.params["threshold"]
    assert rerun.suggest_int("s1_depth", 1, 12) == running.params["s1_depth"]
    assert rerun.user_attrs["requeued_from"] == running.number


def test_presets_are_queued_once_and_run_first(directory: StudyDirectory) -> None:
    study = directory.load_study(directory.storage(), "study")
    space = DEFAULT_SETTINGS.space
    assert queue_presets(study, space) == ["threshnet28", "threshnet79", "threshnet95"]
    assert queue_presets(study, space) == []  # queued already
    first = study.ask()
    assert first.user_attrs[QUEUED_PRESET_ATTR] == "threshnet28"
    assert sample_params(first, space) == _params("threshnet28")
    reopened = directory.load_study(directory.storage(), "study")
    assert queue_presets(reopened, space) == []  # also once the queued one has started


def test_trials_table_has_a_column_per_parameter(directory: StudyDirectory) -> None:
    study = directory.load_study(directory.storage(), "study")
    trial = study.ask()
    trial.suggest_int("threshold", 0, 5)
    trial.set_user_attr("status", "ok")
    trial.set_user_attr("val_acc", 0.5)
    study.tell(trial, [0.5, 2.0])
    table = TrialsTable(directory.trials_path, tuple(param_names(DEFAULT_SETTINGS.space)))
    table.write(study)
    header, row = directory.trials_path.read_text().splitlines()
    columns = header.split(",")
    assert columns[:4] == ["number", "state", "status", "preset"]
    assert set(param_names(DEFAULT_SETTINGS.space)) <= set(columns)
    assert row.startswith("0,COMPLETE,ok,,0.5,")


def test_explicit_flags_override_and_conflicts_are_named() -> None:
    from search.run import _differences, _parser

    args = _parser().parse_args(["--epochs", "3", "--sampler", "random"])
    settings = build_settings(args, DEFAULT_SETTINGS)
    assert settings.train.epochs == 3 and settings.sampler == "random"
    assert settings.train.batch_size == DEFAULT_SETTINGS.train.batch_size
    differences = _differences(DEFAULT_SETTINGS.to_dict(), settings.to_dict())
    assert differences == ["sampler: 'gp-tpe' -> 'random'", "train.epochs: 2 -> 3"]


def test_a_second_run_on_the_same_study_is_refused(
    directory: StudyDirectory, capsys: pytest.CaptureFixture[str]
) -> None:
    with directory.run_lock():
        code = run_cli(
            PROG,
            main,
            ["--out", str(directory.root.parent), "--name", directory.root.name, "--smoke"],
        )
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "is already being run by another process" in error
    assert len(error.splitlines()) == 1


def test_a_directory_that_is_not_a_study_is_refused(directory: StudyDirectory) -> None:
    directory.manifest_path.write_text('{"kind": "something-else"}')
    with pytest.raises(UserError, match="is not a threshnet-search study directory"):
        directory.read_manifest()
