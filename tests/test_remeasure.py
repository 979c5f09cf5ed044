"""The final latency pass: run by the search at its end and by studies.remeasure; the
report, pareto.json and the export use its figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SmokeStudy, cli_error

from studies.load import eligible_trials, load_study
from studies.remeasure import PROG, front_candidates, main
from studies.report import write_report
from threshnet.presets import PUBLISHED_PRESETS


def test_the_search_ends_with_a_final_latency_pass(smoke_study: SmokeStudy) -> None:
    assert smoke_study.result.returncode == 0, smoke_study.result.stderr[-3000:]
    assert "final latency pass: re-timed" in smoke_study.result.stdout
    study = load_study(smoke_study.root)
    assert study.remeasured is not None
    candidates = front_candidates(study)
    assert list(study.remeasured["number"]) == list(candidates["number"])
    assert set(PUBLISHED_PRESETS) <= set(candidates["preset"])  # the presets are re-timed
    assert (study.remeasured["latency_ratio"] > 0).all()
    assert (study.remeasured["rounds"] == 5).all()


def test_remeasured_latencies_replace_the_search_ones_everywhere(
    smoke_study: SmokeStudy, tmp_path: Path
) -> None:
    root = tmp_path / "study"
    shutil.copytree(smoke_study.root, root)
    (root / "remeasured.csv").unlink()
    before = load_study(root)
    assert before.remeasured is None
    write_report(root)
    assert json.loads((root / "pareto.json").read_text())["remeasured_trials"] == []

    assert main([str(root), "--rounds", "3", "--fronts", "1"]) == 0
    study = load_study(root)
    assert study.remeasured is not None and (study.remeasured["rounds"] == 3).all()
    eligible = eligible_trials(study).set_index("number")
    again = study.remeasured.set_index("number")
    for number, row in again.iterrows():
        assert eligible.loc[number, "latency_ms"] == row["latency_ms"]
        assert eligible.loc[number, "latency_remeasured"]
    kept = eligible[~eligible["latency_remeasured"]]
    assert (kept["latency_ms"] == kept["latency_search_ms"]).all()

    write_report(root)
    pareto = json.loads((root / "pareto.json").read_text())
    assert pareto["remeasured_trials"] == [int(n) for n in again.index]
    assert "re-measured after the search" in pareto["latencies"]
    assert "re-measured after the search" in (root / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "is not a directory"),
        (["{study}", "--rounds", "0"], "--rounds"),
        (["{study}", "--device", "tpu"], "--device"),
    ],
)
def test_bad_input_is_one_line(
    smoke_study: SmokeStudy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    filled = [arg.format(missing=tmp_path / "missing", study=smoke_study.root) for arg in args]
    assert message in cli_error(PROG, main, filled, capsys)
