"""README line 1 as a new user runs it: ``search.run --smoke``, no --data-dir, on the
bundled CIFAR-10 subset; the study must show a real trade-off, not chance accuracies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import search_env

from studies.load import eligible_trials, load_study
from studies.report import write_report
from threshnet.presets import PUBLISHED_PRESETS

pytestmark = [pytest.mark.slow, pytest.mark.long]  # the README's first line, whole


def test_the_smoke_study_learns_and_shows_a_front(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "search.run", "--smoke", "--out", str(tmp_path)]
    command += ["--name", "quick", "--cache-dir", str(tmp_path / "cache")]
    result = subprocess.run(
        command, env=search_env(), capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3000 proxy-training and 500 validation images, 10 classes" in result.stderr
    study = load_study(tmp_path / "quick")
    eligible = eligible_trials(study)
    assert len(eligible) == 6
    presets = eligible.set_index("preset").loc[list(PUBLISHED_PRESETS), "val_acc"]
    assert (presets >= 0.15).all(), presets  # chance is 0.10
    assert eligible["val_acc"].max() >= 0.20
    write_report(study.root)
    front = json.loads((study.root / "pareto.json").read_text())["pareto_front"]
    assert len(front) >= 2  # a trade-off, not a single point
