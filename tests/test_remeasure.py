"""The final latency pass: run by the search at its end and by studies.remeasure; the
report, pareto.json and the export use its figures."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SmokeStudy, cli_error

from studies.load import eligible_trials, load_study
from studies.remeasure import (
    EXTRA_ROUNDS_FACTOR,
    MAX_ATTEMPTS,
    PROG,
    front_candidates,
    main,
    remeasure,
)
from studies.report import write_report
from threshnet.presets import PUBLISHED_PRESETS
from threshnet.steady_latency import STEADY_SE, ratio_standard_error


def test_the_search_ends_with_a_final_latency_pass(smoke_study: SmokeStudy) -> None:
    assert smoke_study.result.returncode == 0, smoke_study.result.stderr[-3000:]
    assert "final latency pass: " in smoke_study.result.stdout
    assert "trials re-timed" in smoke_study.result.stdout
    study = load_study(smoke_study.root)
    assert study.remeasured is not None
    candidates = front_candidates(study)
    assert list(study.remeasured["number"]) == list(candidates["number"])
    assert set(PUBLISHED_PRESETS) <= set(candidates["preset"])  # the presets are re-timed
    assert (study.remeasured["latency_ratio"] > 0).all()
    assert study.remeasured["rounds"].between(5, 5 * (1 + EXTRA_ROUNDS_FACTOR)).all()
    # on the study's one scale: ratio x the reference time fixed when the study started
    (kind, entry), *others = study.manifest["latency_scale"].items()
    assert not others and "eager on cpu" in kind and entry["ms"] > 0
    replaced = study.remeasured[study.remeasured["source"] == "re-measured"]
    assert replaced["latency_ms"].tolist() == pytest.approx(
        (replaced["latency_ratio"] * entry["ms"]).tolist()
    )
    for cv, rounds in zip(replaced["latency_cv"], replaced["rounds"], strict=True):
        assert ratio_standard_error(cv, rounds) <= STEADY_SE


def test_trials_are_on_the_study_scale_and_keep_their_raw_times(smoke_study: SmokeStudy) -> None:
    study = load_study(smoke_study.root)
    scale_ms = next(iter(study.manifest["latency_scale"].values()))["ms"]
    timed = study.trials.dropna(subset=["latency_ratio"])
    assert len(timed) >= 4
    assert timed["latency_scale_ms"].tolist() == pytest.approx([scale_ms] * len(timed))
    assert timed["latency_ms"].tolist() == pytest.approx(
        (timed["latency_ratio"] * scale_ms).tolist()
    )
    assert (timed["latency_raw_ms"] > 0).all() and (timed["latency_cpu_ms"] > 0).all()
    assert set(timed["latency_oversubscribed"]) <= {0, 1}
    assert (timed["latency_attempts"] >= 1).all()


def test_the_final_pass_under_noise_keeps_steady_figures_and_flags_the_rest(
    smoke_study: SmokeStudy,
) -> None:
    """Injected timings: the presets time steadily (the same ratio every round); every
    other candidate's rounds scatter (CV far above the limit) in every attempt."""
    study = load_study(smoke_study.root)
    presets = set(
        study.trials.loc[study.trials["preset"].isin(PUBLISHED_PRESETS), "number"].astype(int)
    )
    noise = random.Random(0)
    calls: dict[int, int] = {}

    def noisy_rounds(number: int, model: object) -> tuple[float, float]:
        calls[number] = calls.get(number, 0) + 1
        if number in presets:
            return 2.0 * (1 + number), 1.0
        return noise.uniform(1.0, 30.0), 1.0

    result = remeasure(
        study, device=torch.device("cpu"), threads=1, calm_seconds=0, time_round=noisy_rounds
    )
    rows = result.table.set_index("number")
    search = study.trials.set_index("number")["latency_ms"]
    scale_ms = next(iter(study.manifest["latency_scale"].values()))["ms"]
    assert result.new_reference is None  # the study's own reference time, not a new one
    for number, row in rows.iterrows():
        if number in presets:
            assert row["source"] == "re-measured" and row["flagged"] == 0
            assert row["attempts"] == 1
            assert row["latency_ms"] == pytest.approx(2.0 * (1 + number) * scale_ms)
        else:
            assert row["source"] == "search" and row["flagged"] == 1
            assert row["attempts"] == MAX_ATTEMPTS  # retried, bounded
            assert row["latency_ms"] == search[number]  # the search's figure, kept
            assert ratio_standard_error(row["latency_cv"], row["rounds"]) > STEADY_SE
            assert row["rounds"] == 5 * (1 + EXTRA_ROUNDS_FACTOR)  # rounds added, bounded
    assert set(presets) <= set(rows.index) and len(rows) > len(presets)
    assert calls[max(presets)] == 5  # five steady rounds, no round again or added


def test_a_figure_whose_rounds_scatter_a_little_is_replaced_after_more_rounds(
    smoke_study: SmokeStudy,
) -> None:
    """Injected timings scattered by 5 %: 5 rounds leave the median's error above the limit
    (the rule on the rounds' CV flagged such figures about half the time); the pass adds
    rounds until it is within, and every figure replaces the search's."""
    study = load_study(smoke_study.root)
    noise: dict[int, random.Random] = {}

    def scattered_rounds(number: int, model: object) -> tuple[float, float]:
        draw = noise.setdefault(number, random.Random(number))
        return draw.gauss(2.0 + number, 0.05 * (2.0 + number)), 1.0

    result = remeasure(
        study, device=torch.device("cpu"), threads=1, calm_seconds=0, time_round=scattered_rounds
    )
    rows = result.table
    assert (rows["source"] == "re-measured").all() and (rows["attempts"] == 1).all()
    assert (rows["rounds"] > 5).any() and (rows["rounds"] <= 5 * (1 + EXTRA_ROUNDS_FACTOR)).all()
    for cv, rounds in zip(rows["latency_cv"], rows["rounds"], strict=True):
        assert ratio_standard_error(cv, rounds) <= STEADY_SE


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

    assert main([str(root), "--rounds", "2", "--fronts", "1"]) == 0
    study = load_study(root)
    assert study.remeasured is not None
    assert study.remeasured["rounds"].between(2, 2 * (1 + EXTRA_ROUNDS_FACTOR)).all()
    eligible = eligible_trials(study).set_index("number")
    again = study.remeasured.set_index("number")
    for number, row in again.iterrows():
        assert eligible.loc[number, "latency_ms"] == row["latency_ms"]
        assert eligible.loc[number, "latency_remeasured"] == (row["source"] == "re-measured")
        assert eligible.loc[number, "latency_flagged"] == bool(row["flagged"])
    kept = eligible[~eligible["latency_remeasured"]]
    assert (kept["latency_ms"] == kept["latency_search_ms"]).all()

    write_report(root)
    pareto = json.loads((root / "pareto.json").read_text())
    assert pareto["remeasured_trials"] == [int(n) for n in again.index]
    assert "re-measured after the search" in pareto["latencies"]
    assert "the study's one reference time" in pareto["latencies"]
    page = (root / "report.html").read_text()
    assert "re-measured after the search" in page
    assert "<th>latency from</th><th>its CV</th><th>its SE</th><th>rounds</th>" in page


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
