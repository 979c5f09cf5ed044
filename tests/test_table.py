"""studies.table: the paper's results table, with errors from real threshnet.train runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import SmokeStudy, cli_error

from studies.export import export_configs
from studies.load import eligible_trials, load_study
from studies.pareto import pareto_front
from studies.table import NOT_TRAINED, PROG, main
from threshnet.training.train import main as train_main


def test_the_table_has_presets_winners_costs_and_trained_errors(
    smoke_study: SmokeStudy, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "study"
    shutil.copytree(smoke_study.root, root)
    eligible = eligible_trials(load_study(root)).set_index("number")
    exported = int(eligible.index[-1])
    export_configs(root, None, [exported])  # one exported winner
    trained = tmp_path / "trained"
    flags = ["--preset", "threshnet28", "--data-dir", str(tiny_folder), "--epochs", "1"]
    train_main([*flags, "--out", str(trained / "t28"), "--batch-size", "32"])
    summary = json.loads((trained / "t28" / "summary.json").read_text())

    assert main([str(root), "--trained", str(trained)]) == 0
    table = pd.read_csv(root / "table.csv").set_index("model")
    assert "| model | trial | ms per image | C10 error % |" in capsys.readouterr().out
    presets = set(eligible.index[eligible["preset"] != ""])
    numbers = presets | set(pareto_front(eligible.reset_index())["number"]) | {exported}
    names = {eligible.loc[n, "preset"] or f"trial {n}" for n in numbers}
    assert set(table.index) == names and len(presets) == 3
    error = 100 * (1 - summary["final_epoch_test_acc"])
    assert float(table.loc["threshnet28", "C10 error %"]) == pytest.approx(error, abs=0.01)
    assert (table.drop(index="threshnet28")["C10 error %"] == NOT_TRAINED).all()
    # the paper's torchstat figures at 224 (threshnet-spec.md: 3.46 G, 6.90 G, 109.68 MB)
    assert table.loc["threshnet79", ["FLOPs G", "MAdd G", "memory MB"]].tolist() == [
        3.46,
        6.9,
        109.68,
    ]
    assert (root / "table.md").read_text().startswith("| model |")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{study}", "--trained", "{missing}"], "is not a directory"),
        (["{missing}"], "is not a directory"),
    ],
)
def test_bad_input_is_one_line(
    smoke_study: SmokeStudy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    filled = [a.format(study=smoke_study.root, missing=tmp_path / "missing") for a in args]
    assert message in cli_error(PROG, main, filled, capsys)
