"""The study-file schema: what search writes, studies reads back, field by field, typed."""

from __future__ import annotations

import dataclasses
import json
import math

import optuna
import pandas as pd
import pytest

from search.driver.records import TrialsTable
from search.setup.settings import DEFAULT_SETTINGS, StudySettings
from search.setup.study import StudyDirectory
from space import param_names
from studies import schema
from studies.load import StudyError, load_study
from threshnet.cli import UserError

SAMPLE_VALUES = {int: 12345678901, float: 0.123456789012345, str: 'a "quoted", text\nline'}
PANDAS_TYPES = {int: "Int64", float: "float64", str: "string"}


def _record() -> dict[str, object]:
    """A value of the declared type for every field (status must be a real one)."""
    record = {name: SAMPLE_VALUES[kind] for name, kind in schema.RECORD_FIELDS.items()}
    record["status"] = "ok"
    return record


@pytest.fixture
def study_dir(directory: StudyDirectory) -> StudyDirectory:
    """A study directory with a manifest and no trials yet."""
    directory.write_manifest(
        {"name": "study", "study_name": "study", "settings": DEFAULT_SETTINGS.to_dict()}
    )
    return directory


def test_what_search_writes_studies_reads_back_field_by_field(study_dir: StudyDirectory) -> None:
    study = study_dir.load_study(study_dir.storage(), "study")
    finished = study.ask()
    finished.suggest_int("threshold", 0, 5)
    finished.suggest_int("s1_depth", 1, 12)
    record = _record()
    finished.set_user_attr(schema.RECORD_ATTR, record)
    study.tell(finished, [0.5, 2.0])
    failed = study.ask()  # a trial with nothing measured: empty cells, missing values
    failed.suggest_int("threshold", 0, 5)
    failed.set_user_attr("status", "failed")  # as version 2 stored it: still read
    study.tell(failed, state=optuna.trial.TrialState.FAIL)

    TrialsTable(study_dir.trials_path, tuple(param_names(DEFAULT_SETTINGS.space))).write(study)
    loaded = load_study(study_dir.root)
    assert list(loaded.trials.columns) == schema.table_columns(param_names(DEFAULT_SETTINGS.space))
    first, second = loaded.trials.iloc[0], loaded.trials.iloc[1]
    for name, kind in schema.RECORD_FIELDS.items():
        assert str(loaded.trials[name].dtype) == PANDAS_TYPES[kind], name
        if kind is float:
            assert math.isclose(first[name], record[name], rel_tol=1e-15), name
        else:
            assert first[name] == record[name], name
    assert (first["number"], first["state"]) == (0, "COMPLETE")
    assert (second["number"], second["state"], second["status"]) == (1, "FAIL", "failed")
    assert pd.isna(second["val_acc"]) and pd.isna(second["params"]) and second["preset"] == ""
    assert first["threshold"] == finished.params["threshold"] and pd.isna(second["s1_depth"])
    assert loaded.trials["datetime_start"].dt.tz is not None
    assert loaded.param_columns == param_names(DEFAULT_SETTINGS.space)


def test_the_manifest_round_trips_and_both_readers_check_its_version(
    directory: StudyDirectory,
) -> None:
    manifest = {
        "name": "study",
        "study_name": "study",
        "settings": DEFAULT_SETTINGS.to_dict(),
        "runs": [{"a": 1}],
    }
    directory.write_manifest(manifest)
    stored = json.loads(directory.manifest_path.read_text())
    assert (stored["kind"], stored["version"]) == (schema.MANIFEST_KIND, schema.MANIFEST_VERSION)
    assert load_study(directory.root).manifest == stored
    assert directory.read_manifest() == stored

    newer = schema.MANIFEST_VERSION + 1
    directory.manifest_path.write_text(json.dumps({**stored, "version": newer}))
    expected = rf"has version {newer}; .* reads versions 1 to {schema.MANIFEST_VERSION} .*newer"
    with pytest.raises(UserError, match=expected):
        directory.read_manifest()
    with pytest.raises(StudyError, match=f"has version {newer}"):
        load_study(directory.root)


def test_a_version_1_manifest_is_migrated(directory: StudyDirectory) -> None:
    settings = DEFAULT_SETTINGS.to_dict()
    settings["latency"]["cpu_threads"] = None  # recorded by version 1, removed since
    del settings["latency"]["rounds"]  # added in version 3
    old = {"kind": schema.MANIFEST_KIND, "version": 1, "name": "first-name", "settings": settings}
    directory.manifest_path.write_text(json.dumps(old))
    manifest = directory.read_manifest()
    assert manifest["version"] == schema.MANIFEST_VERSION
    assert manifest["study_name"] == "first-name"
    assert "cpu_threads" not in manifest["settings"]["latency"]
    settings = StudySettings.from_dict(manifest["settings"])
    assert settings.latency.rounds == 0  # measured in one run: resumed studies go on so
    assert dataclasses.replace(settings, latency=DEFAULT_SETTINGS.latency) == DEFAULT_SETTINGS
    assert load_study(directory.root).manifest == manifest


def test_a_version_3_study_goes_on_timing_by_wall_time_in_raw_milliseconds(
    directory: StudyDirectory,
) -> None:
    settings = DEFAULT_SETTINGS.to_dict()
    del settings["latency"]["clock"]  # added in version 4, with the latency scale
    old = {"kind": schema.MANIFEST_KIND, "version": 3, "name": "v3", "study_name": "v3"}
    directory.manifest_path.write_text(json.dumps({**old, "settings": settings}))
    manifest = directory.read_manifest()
    assert manifest["version"] == schema.MANIFEST_VERSION == 4
    assert StudySettings.from_dict(manifest["settings"]).latency.clock == "wall"
    assert DEFAULT_SETTINGS.latency.clock == "cpu"  # what a new study times by
    assert schema.LATENCY_SCALE_KEY not in manifest  # raw milliseconds, as its trials were


def test_every_recorded_status_and_type_is_declared_once() -> None:
    assert set(schema.RECORD_FIELDS.values()) <= {int, float, str}
    overlap = set(schema.RECORD_FIELDS) & (
        set(schema.LEADING_COLUMNS) | set(schema.DATETIME_COLUMNS)
    )
    assert overlap == set()


def test_rows_are_appended_and_a_cut_last_row_is_skipped(study_dir: StudyDirectory) -> None:
    study = study_dir.load_study(study_dir.storage(), "study")
    table = TrialsTable(study_dir.trials_path, ("threshold",))
    table.write(study)  # as a run starts: the header, no rows
    for accuracy in (0.25, 0.5):
        trial = study.ask()
        trial.suggest_int("threshold", 0, 5)
        trial.set_user_attr(schema.RECORD_ATTR, {**_record(), "val_acc": accuracy})
        study.tell(trial, [accuracy, 2.0])
        table.append(study.get_trials(deepcopy=False)[-1])
    text = study_dir.trials_path.read_text()
    assert text.count("number,state,") == 1  # one header
    assert list(load_study(study_dir.root).trials["val_acc"]) == [0.25, 0.5]

    study_dir.trials_path.write_text(text + "2,COMPLETE,ok,,0.7")  # a kill mid-append
    assert list(load_study(study_dir.root).trials["number"]) == [0, 1]
    study_dir.trials_path.unlink()  # a table that is gone is started again
    table.append(study.get_trials(deepcopy=False)[0])
    assert list(load_study(study_dir.root).trials["number"]) == [0]
