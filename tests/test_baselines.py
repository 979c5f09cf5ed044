"""--baselines: the paper's comparison networks, trained and timed on a study's footing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import search_env, smoke_command

from studies import schema
from studies.load import load_study
from studies.report import write_report
from studies.table import main as table_main
from threshnet.baselines import BASELINES, build_baseline, parse_baselines

# 10-class parameter counts: HarDNet's from threshnet-spec.md (section 5); the others are
# torchvision's and timm's own models with a 10-class head.
PARAMS = {"hardnet68": 16_550_598, "hardnet85": 35_402_022}


@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_builds_for_cifar_sized_inputs(name: str) -> None:
    model = build_baseline(name, num_classes=10).eval()
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    if name in PARAMS:
        assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


def test_baseline_names_are_checked() -> None:
    assert parse_baselines("all") == BASELINES
    assert parse_baselines("squeezenet, hardnet68") == ("hardnet68", "squeezenet")
    with pytest.raises(ValueError, match=r"unknown baseline.*resnet50.*choose from"):
        parse_baselines("resnet50,squeezenet")


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=search_env(), capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.slow
@pytest.mark.long  # a whole study for four extra measurements
def test_baselines_are_measured_after_the_trials_and_shown_never_searched(
    search_data_dir: Path, tmp_path: Path
) -> None:
    command = smoke_command(search_data_dir, tmp_path / "runs", "b", 3, tmp_path / "cache")
    first = _run([*command, "--baselines", "squeezenet,hardnet68", "--no-final-pass"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert "baselines: measured 2 of 2" in first.stdout
    root = tmp_path / "runs" / "b"
    table = schema.read_baselines(root)
    assert table is not None and list(table["name"]) == ["hardnet68", "squeezenet"]
    assert (table["status"] == "ok").all() and (table["latency_ratio"] > 0).all()
    assert (table["epochs"] == 3).all() and table["val_acc"].between(0, 1).all()
    assert len(load_study(root).trials) == 3  # never Optuna trials

    # A rerun measures only what is missing and adds no trial.
    again = _run([*command, "--baselines", "squeezenet,mobilenet", "--no-final-pass"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "baselines: measured 1 of 1" in again.stdout
    study = load_study(root)
    assert study.baselines is not None
    assert sorted(study.baselines["name"]) == ["hardnet68", "mobilenet", "squeezenet"]
    assert len(study.trials) == 3

    write_report(root)
    pareto = json.loads((root / "pareto.json").read_text())
    assert set(pareto["baselines"]) == {"hardnet68", "mobilenet", "squeezenet"}
    front = set(pareto["pareto_front"])
    assert all(set(b["dominated_by"]) <= front for b in pareto["baselines"].values())
    page = (root / "report.html").read_text()
    assert '<ul id="baselines">' in page and "baselines (not searched)" in page
    assert table_main([str(root)]) == 0
    assert "squeezenet (baseline)" in (root / "table.md").read_text()
