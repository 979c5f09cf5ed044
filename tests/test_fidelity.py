"""The proxy-fidelity check (studies.fidelity): selection, rank correlations with their
bootstrap intervals, retraining on a real local Ray (resumable), and the report's plot."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SmokeStudy, cli_error, search_env

from studies import schema
from studies.fidelity import (
    PROG,
    Selection,
    _correlation,
    _kendall,
    _spearman,
    fidelity_summary,
    main,
    parse_selection,
    select_configs,
)
from studies.load import eligible_trials, load_study
from studies.pareto import pareto_front
from studies.report import write_report
from threshnet.presets import PUBLISHED_PRESETS


def test_a_selection_names_front_presets_and_random_draws() -> None:
    assert parse_selection("front,presets,random:8") == Selection(True, True, 8)
    assert parse_selection("random:3") == Selection(random=3)
    for bad in ("front,best", "random", "random:0", "random:x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="front, presets and random:K"):
            parse_selection(bad)


def test_rank_correlations_and_their_bootstrap_intervals() -> None:
    x = np.linspace(0.1, 0.9, 12)
    same = _correlation(x, x * 2 + 0.05, _kendall, seed=0)
    assert (same.value, same.low, same.high) == pytest.approx((1.0, 1.0, 1.0))
    reversed_ = _correlation(x, -x, _spearman, seed=0)
    assert reversed_.value == pytest.approx(-1.0)
    noisy_y = x + np.random.default_rng(1).normal(0, 0.15, len(x))
    noisy = _correlation(x, noisy_y, _kendall, seed=0)
    assert 0 < noisy.value < 1
    assert noisy.low < noisy.value < noisy.high <= 1.0
    assert _correlation(x, noisy_y, _kendall, seed=0) == noisy  # seeded
    too_few = _correlation(x[:2], x[:2], _kendall, seed=0)
    assert np.isnan(too_few.value) and too_few.text() == "n/a"
    constant = _correlation(x, np.full(len(x), 0.5), _spearman, seed=0)
    assert np.isnan(constant.value)


def test_the_selection_takes_the_front_the_presets_and_seeded_random_trials(
    smoke_study: SmokeStudy,
) -> None:
    study = load_study(smoke_study.root)
    eligible = eligible_trials(study)
    front = set(pareto_front(eligible)["number"])
    chosen = select_configs(study, Selection(front=True, presets=True, random=1), seed=0)
    numbers = list(chosen["number"])
    assert numbers == sorted(set(numbers))  # each config once, by trial number
    assert front <= set(numbers)
    assert set(PUBLISHED_PRESETS) <= set(chosen["preset"])
    assert set(chosen["selected_as"]) <= {"front", "preset", "random"}
    rest = eligible[~eligible["number"].isin(front) & ~eligible["preset"].isin(PUBLISHED_PRESETS)]
    assert (chosen["selected_as"] == "random").sum() == min(1, len(rest))
    only_random = select_configs(study, Selection(random=2), seed=5)
    assert list(only_random["number"]) == list(
        select_configs(study, Selection(random=2), seed=5)["number"]
    )
    assert len(only_random) == 2


def test_a_summary_takes_the_latest_row_of_each_config_at_the_longest_budget(
    smoke_study: SmokeStudy, tmp_path: Path
) -> None:
    root = tmp_path / "study"
    shutil.copytree(smoke_study.root, root)
    rows = [  # number, epochs, status, proxy, long
        (0, 5, "ok", 0.1, 0.30),
        (1, 5, "failed", 0.2, float("nan")),
        (1, 5, "ok", 0.2, 0.40),  # retried: this row counts
        (2, 5, "ok", 0.3, 0.50),
        (7, 5, "ok", 0.4, 0.45),
        (0, 3, "ok", 0.1, 0.9),  # another budget
    ]
    for number, epochs, status, proxy, long in rows:
        schema.append_fidelity(
            root,
            {
                "number": number,
                "status": status,
                "epochs": epochs,
                "proxy_epochs": 1,
                "proxy_val_acc": proxy,
                "val_acc": "" if np.isnan(long) else long,
            },
        )
    summary = fidelity_summary(load_study(root))
    assert summary is not None
    assert summary.epochs == 5 and list(summary.configs["number"]) == [0, 1, 2, 7]
    assert summary.failed == 0
    assert summary.kendall.value == pytest.approx(4 / 6)  # one discordant pair of six
    assert "over 4 configs" in summary.line()
    at_three = fidelity_summary(load_study(root), epochs=3)
    assert at_three is not None and len(at_three.configs) == 1


def _fidelity(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "studies.fidelity", str(root), "--epochs", "4"]
    command += ["--num-cpus", "2", *extra]
    return subprocess.run(
        command, env=search_env(), capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_retraining_on_ray_is_recorded_resumes_and_reaches_the_report(
    smoke_study: SmokeStudy, tmp_path: Path
) -> None:
    root = tmp_path / "study"
    shutil.copytree(smoke_study.root, root)
    first = _fidelity(root, "--select", "front,presets,random:1")
    assert first.returncode == 0, first.stderr[-3000:]
    table = schema.read_fidelity(root)
    assert table is not None and (table["status"] == "ok").all()
    assert (table["epochs"] == 4).all() and (table["proxy_epochs"] == 3).all()
    study = load_study(root)
    proxy = eligible_trials(study).set_index("number")
    for row in table.itertuples():
        assert row.proxy_val_acc == proxy.loc[row.number, "val_acc"]
        assert row.seed == proxy.loc[row.number, "seed"]  # trained as its trial was
        assert 0 <= row.val_acc <= 1
    assert "Kendall tau" in first.stdout and "Spearman rho" in first.stdout
    retrained = len(table)

    # A kill mid-append leaves a cut last row: the rerun retrains only that config.
    text = (root / schema.FIDELITY_FILE).read_text()
    (root / schema.FIDELITY_FILE).write_text(text[: text.rstrip("\n").rfind("\n") + 10])
    second = _fidelity(root, "--select", "front,presets,random:1")
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{retrained - 1} already retrained at 4 epochs; retraining 1" in second.stdout
    again = schema.read_fidelity(root)
    assert again is not None and sorted(again["number"]) == sorted(table["number"])

    write_report(root)
    pareto = json.loads((root / "pareto.json").read_text())
    assert pareto["fidelity"]["configs"] == retrained
    assert pareto["fidelity"]["epochs"] == 4
    page = (root / "report.html").read_text()
    assert 'id="plot-fidelity"' in page and "Does the proxy rank like longer training?" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "is not a directory"),
        (["{study}", "--epochs", "3"], "is not longer than the proxy's 3 epochs"),
        (["{study}", "--select", "best"], "unknown selection 'best'"),
        (["{study}", "--gpus-per-trial", "1", "--num-cpus", "1"], "needs a GPU"),
    ],
)
def test_bad_input_is_one_line(
    smoke_study: SmokeStudy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    root = tmp_path / "study"
    shutil.copytree(smoke_study.root, root)
    filled = [arg.format(missing=tmp_path / "missing", study=root) for arg in args]
    assert message in cli_error(PROG, main, filled, capsys)
    assert schema.read_fidelity(root) is None  # nothing written
    assert isinstance(load_study(root).trials, pd.DataFrame)
