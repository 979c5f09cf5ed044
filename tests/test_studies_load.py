"""Loading a study directory: typed columns, running studies, broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studies import schema
from studies.load import StudyError, eligible_trials, load_study

HEADER = "number,state,status,preset,val_acc,latency_ms,params,macs,epochs,config_json,threshold"


def _study(root: Path, rows: list[str] | None) -> Path:
    root.mkdir(parents=True)
    settings = {"train": {"epochs": 2}, "space": {"num_classes": 10}}
    schema.write_manifest(root, {"name": "s", "study_name": "s", "settings": settings})
    if rows is not None:
        (root / "trials.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return root


def _versioned(root: Path, version: int | None) -> Path:
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "version": version}))
    return root


def test_columns_are_typed_and_eligibility_is_strict(tmp_path: Path) -> None:
    root = _study(
        tmp_path / "s",
        [
            '0,COMPLETE,ok,threshnet79,0.5,2.5,100,200,2,"{}",3',
            "1,FAIL,failed,,,,100,200,,,1",
            "2,PRUNED,infeasible,,,,100,200,,,2",
            '3,COMPLETE,ok,,0.6,3.5,100,200,1,"{}",4',  # other fidelity
            "4,RUNNING,running,,,,,,,,0",
        ],
    )
    study = load_study(root)
    trials = study.trials
    assert str(trials["number"].dtype) == "Int64" and str(trials["val_acc"].dtype) == "float64"
    assert str(trials["state"].dtype) == "string"
    assert eligible_trials(study)["number"].tolist() == [0]
    assert study.param_columns == ["threshold"]


def test_a_study_without_finished_trials_loads_empty(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path / "s", None))
    assert len(study.trials) == 0 and eligible_trials(study).empty


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root, "is not a directory"),
        (lambda root: (root.mkdir(), root)[1], "no manifest.json"),
        (
            lambda root: _study(root, ["0,COMPLETE,ok,,not-a-number,1,1,1,2,,1"]),
            "is not a valid trials table",
        ),
        (
            lambda root: _study(root, ['0,COMPLETE,ok,,0.5,1,1,1,2,"{unterminated']),
            "is not a valid trials table",
        ),
        (lambda root: _versioned(_study(root, []), 99), "has version 99; this toolkit reads"),
        (lambda root: _versioned(_study(root, []), None), "has version None"),
    ],
)
def test_broken_studies_fail_with_one_line(tmp_path: Path, make, message: str) -> None:
    root = make(tmp_path / "s")
    with pytest.raises(StudyError, match=message) as error:
        load_study(root)
    assert "\n" not in str(error.value)
