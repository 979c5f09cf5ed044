"""The proxy-fidelity ladder (search.fidelity, studies.fidelity): selection, rank statistics
against scipy, top-k and front recall on hand-made cases, zero-cost scores, the ladder
from fidelity.csv rows, retraining on a real local Ray (resumable) and the report's plots."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SmokeStudy, cli_error, search_env
from scipy import stats

from search import fidelity as check
from search.setup.study import StudyDirectory
from search.tasks.retrain import RetrainJob
from search.tasks.retrain_progress import RunningTrainings
from studies import schema
from studies.fidelity import (
    Budget,
    Ladder,
    RungAgreement,
    ladder_summary,
    parse_budget,
    parse_budgets,
)
from studies.fidelity_select import Selection, parse_selection, select_configs, stratified_pick
from studies.fidelity_stats import (
    Correlation,
    correlation,
    front_recall,
    kendall,
    spearman,
    top_k_overlap,
)
from studies.load import eligible_trials, load_study
from studies.pareto import pareto_mask
from studies.report import write_report
from threshnet.cli import EXIT_TERMINATED
from threshnet.model import build_model
from threshnet.presets import PUBLISHED_PRESETS, get_preset
from threshnet.training.epoch_checkpoint import progress_path
from threshnet.zero_cost import synflow_log_score, zero_cost_scores


def test_a_selection_names_front_presets_random_and_stratified_draws() -> None:
    assert parse_selection("front,presets,random:8") == Selection(True, True, 8)
    assert parse_selection("stratified:16,front") == Selection(front=True, stratified=16)
    for bad in ("front,best", "random", "random:0", "stratified:x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="stratified:K"):
            parse_selection(bad)


def test_budgets_parse_and_name_their_images() -> None:
    assert parse_budget("6xall") == Budget(6, "all")
    assert parse_budgets("1xproxy, 2x8000") == (Budget(1, "proxy"), Budget(2, "8000"))
    assert parse_budgets("") == ()
    assert Budget(2, "8000").label == "2x8000"
    for bad in ("0xall", "2x0", "2", "2xsome", "x8000"):
        with pytest.raises(argparse.ArgumentTypeError, match="EPOCHSxIMAGES"):
            parse_budget(bad)


def test_rank_statistics_match_scipy_and_their_intervals_hold_them() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=16)
    y = x + rng.normal(0, 0.8, 16)
    assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    tau = correlation(x, y, kendall, seed=0)
    assert tau.value == pytest.approx(stats.kendalltau(x, y).statistic)
    assert -1 <= tau.low < tau.value < tau.high <= 1
    assert correlation(x, y, kendall, seed=0) == tau  # seeded
    same = correlation(x, 2 * x + 1, spearman, seed=0)
    assert (same.value, same.low, same.high) == pytest.approx((1.0, 1.0, 1.0))
    assert np.isnan(correlation(x[:2], y[:2], kendall, seed=0).value)
    assert np.isnan(correlation(x, np.full(16, 0.5), kendall, seed=0).value)


def test_top_k_overlap_and_front_recall_on_hand_made_cases() -> None:
    truth = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert top_k_overlap(truth, truth, 2) == 1.0
    assert top_k_overlap(-truth, truth, 2) == 0.0
    assert top_k_overlap(np.array([0.9, 0.1, 0.8, 0.6, 0.5]), truth, 2) == 0.5
    # latency rises with accuracy: every config is on the true front
    latency = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert front_recall(truth, truth, latency) == 1.0
    # a score that ranks config 1 above config 0 (slower): 0 falls off the score's front
    score = np.array([0.8, 0.9, 0.7, 0.6, 0.5])
    assert front_recall(score, truth, latency) == pytest.approx(4 / 5)
    # the reverse ranking: only the fastest config stays on its front
    assert front_recall(-truth, truth, latency) == pytest.approx(1 / 5)


def _trials(count: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "number": range(count),
            "state": "COMPLETE",
            "status": "ok",
            "preset": [PUBLISHED_PRESETS[i] if i < 3 else "" for i in range(count)],
            "val_acc": rng.uniform(0.2, 0.6, count),
            "latency_ms": rng.uniform(2, 20, count),
            "epochs": 2,
            "seed": 0,
            "train_seconds": 10.0,
            "config_json": "{}",
        }
    )


def test_the_selection_takes_at_least_16_and_dominated_trials_spread_out(
    smoke_study: SmokeStudy,
) -> None:
    study = dataclasses.replace(load_study(smoke_study.root), trials=_trials(40), remeasured=None)
    study.manifest["settings"]["train"]["epochs"] = 2
    chosen = select_configs(study, parse_selection("front,presets,stratified:16"), seed=0)
    assert len(chosen) == 16 and chosen["number"].is_unique
    eligible = eligible_trials(study)
    on_front = set(eligible[pareto_mask(eligible)]["number"])
    assert on_front <= set(chosen["number"]) and set(PUBLISHED_PRESETS) <= set(chosen["preset"])
    dominated = chosen[chosen["selected_as"] == "stratified"]
    assert len(dominated) >= 4 and not set(dominated["number"]) & on_front
    assert set(chosen["number"]) == set(
        select_configs(study, parse_selection("front,presets,stratified:16"), seed=0)["number"]
    )
    # spread: picks fall in several accuracy quartiles and several latency quartiles
    rest = eligible[~eligible["number"].isin(on_front)]
    picked = stratified_pick(rest, 9, seed=1)
    assert len(picked) == 9
    for column in ("val_acc", "latency_ms"):
        quartile = pd.qcut(rest[column], 4, labels=False)
        assert quartile[picked.index].nunique() >= 3
    small = dataclasses.replace(study, trials=_trials(10))
    assert len(select_configs(small, Selection(front=True, stratified=16), seed=0)) == 10


def test_zero_cost_scores_on_a_tiny_model() -> None:
    tiny = get_preset("threshnet28")
    scores = zero_cost_scores(tiny, input_size=32, seed=0)
    assert scores.params == 10_180_718 and scores.macs > 0
    assert np.isfinite(scores.synflow) and scores.seconds > 0
    assert zero_cost_scores(tiny, input_size=32, seed=0).synflow == pytest.approx(scores.synflow)
    # SynFlow grows with the network
    bigger = get_preset("threshnet79")
    assert zero_cost_scores(bigger, input_size=32).synflow > scores.synflow
    model = build_model(tiny)
    before = [p.detach().clone() for p in model.parameters()]
    synflow_log_score(model, 32)
    assert all((a == b).all() for a, b in zip(before, model.parameters(), strict=True))


def _ladder_rows(root: Path, seeds: pd.Series) -> None:
    """Hand-made fidelity rows: 6 configs, the long budget 6xall, a rung 1xproxy that
    ranks perfectly, the (3-epoch) proxy's second seed, a zero-cost score reversed."""
    long = [0.50, 0.60, 0.55, 0.70, 0.65, 0.40]
    second = [0.32, 0.36, 0.34, 0.40, 0.38, 0.30]
    rungs = [  # rung, kind, epochs, images, figure by config, seconds, seed offset
        ("6xall", "trained", 6, 3000, long, 60.0, 0),
        ("1xproxy", "trained", 1, 82, [a - 0.3 for a in long], 2.0, 0),
        ("3xproxy", "trained", 3, 82, second, 4.0, 1),
        ("params", "zero-cost", 0, None, [-a for a in long], 0.5, 0),
    ]
    for number in range(6):
        for rung, kind, epochs, images, figure, seconds, offset in rungs:
            row = {
                "number": number,
                "status": "ok",
                "rung": rung,
                "kind": kind,
                "epochs": epochs,
                "train_images": images,
                "proxy_epochs": 3,
                "proxy_val_acc": 0.3,
                "val_acc" if kind == "trained" else "score": figure[number],
                "train_seconds": seconds,
                "seed": int(seeds.get(number, 0)) + offset,
            }
            schema.append_fidelity(root, row)


def test_the_ladder_from_fidelity_rows_and_the_report_plots(
    smoke_study: SmokeStudy, tmp_path: Path
) -> None:
    root = tmp_path / "study"
    shutil.copytree(smoke_study.root, root)
    (root / "remeasured.csv").unlink(missing_ok=True)
    trials = eligible_trials(load_study(root))
    assert len(trials) >= 3
    _ladder_rows(root, trials.set_index("number")["seed"])
    study = load_study(root)
    ladder = ladder_summary(study)
    assert ladder is not None and ladder.long == "6xall"
    numbers = set(trials["number"]) & set(range(6))
    assert len(ladder.configs) == len(numbers)
    one = ladder.rung("1xproxy")
    assert one is not None and one.kendall.value == pytest.approx(1.0)
    assert one.top_k == 1.0 and one.front_recall == 1.0 and one.seconds == 2.0
    params = ladder.rung("params")
    assert params is not None and params.kendall.value == pytest.approx(-1.0)
    assert ladder.rung("3xproxy seed+1") is not None  # the study's proxy is 3 epochs
    assert np.isfinite(ladder.ceiling.value)  # the search's proxy against its second seed
    assert next(row.rung for row in ladder.rungs) == "params"  # cheapest first
    assert "| 6xall (long) |" in ladder.table()
    write_report(root)
    pareto = json.loads((root / "pareto.json").read_text())
    assert pareto["fidelity"]["long"] == "6xall"
    assert {r["rung"] for r in pareto["fidelity"]["rungs"]} >= {"search", "1xproxy", "params"}
    page = (root / "report.html").read_text()
    for marker in ('id="plot-ladder"', 'id="plot-fidelity"', 'id="fidelity-ladder"'):
        assert marker in page
    assert "Advice: too few configs to advise a budget" in page  # 6 configs here


def test_a_table_from_before_rungs_reads_as_proxy_rungs(tmp_path: Path) -> None:
    fields = schema.FIDELITY_FIELDS_V1
    row = {"number": 1, "status": "ok", "epochs": 5, "proxy_epochs": 1, "val_acc": 0.4}
    text = ",".join(fields) + "\n" + ",".join(str(row.get(f, "")) for f in fields) + "\n"
    (tmp_path / schema.FIDELITY_FILE).write_text(text)
    table = schema.read_fidelity(tmp_path)
    assert table is not None
    assert table.loc[0, "rung"] == "5xproxy" and table.loc[0, "kind"] == "trained"


def _fidelity(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "search.fidelity", str(root), "--long", "4xproxy"]
    command += ["--num-cpus", "2", *extra]
    return subprocess.run(
        command, env=search_env(), capture_output=True, text=True, timeout=600, check=False
    )


SELECT = ("--select", "presets", "--rungs", "1x40")


def _checked_copy(smoke_study: SmokeStudy, tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A copy of the smoke study with the check run on its presets: the root, the table."""
    root = tmp_path / "study"
    shutil.copytree(smoke_study.root, root)
    first = _fidelity(root, *SELECT)
    assert first.returncode == 0, first.stderr[-3000:]
    table = schema.read_fidelity(root)
    assert table is not None and (table["status"] == "ok").all()
    trained = table[table["kind"] == "trained"]
    # 3 presets x (proxy seed+1, 4xproxy, 1x40); each zero-cost score once per config
    assert sorted(trained["rung"].value_counts().items()) == [
        ("1x40", 3),
        ("3xproxy", 3),
        ("4xproxy", 3),
    ]
    assert (table["kind"] == "zero-cost").sum() == 9
    proxy = eligible_trials(load_study(root)).set_index("number")
    seeded = trained[trained["rung"] == "3xproxy"]
    assert (seeded["seed"] == seeded["number"].map(proxy["seed"]) + 1).all()
    small = trained[trained["rung"] == "1x40"]["train_images"]
    assert (small < trained[trained["rung"] == "4xproxy"]["train_images"].min()).all()
    assert "Kendall tau" in first.stdout and "| 4xproxy (long) |" in first.stdout
    summary = json.loads((root / schema.FIDELITY_JSON).read_text())
    assert summary["long"] == "4xproxy" and summary["configs"] == 3
    assert not (root / "fidelity-checkpoints").exists()  # each removed with its row
    return root, table


# Nine trainings of the presets on a local Ray (a minute on 2 cores): with -m long; in CI
# the check's selection, ladder, statistics, bookkeeping and report are the tests above.
@pytest.mark.long
def test_the_check_trains_its_rungs_on_ray_and_reaches_the_report(
    smoke_study: SmokeStudy, tmp_path: Path
) -> None:
    root, _ = _checked_copy(smoke_study, tmp_path)
    write_report(root)
    page = (root / "report.html").read_text()
    assert 'id="plot-ladder"' in page and "Does the proxy rank like longer training?" in page


# Its resume and its SIGTERM, each a Ray session more (a minute on 2 cores): the rerun's
# bookkeeping is test_a_rerun_sweeps_what_a_killed_check_left_..., the SIGTERM handling
# search.run's (tests/test_search_e2e.py), in CI.
@pytest.mark.long
def test_the_check_resumes_after_a_kill_and_stops_on_sigterm_keeping_its_state(
    smoke_study: SmokeStudy, tmp_path: Path
) -> None:
    root, table = _checked_copy(smoke_study, tmp_path)
    # A kill mid-append leaves a cut last row: the rerun retrains only that one.
    text = (root / schema.FIDELITY_FILE).read_text()
    (root / schema.FIDELITY_FILE).write_text(text[: text.rstrip("\n").rfind("\n") + 10])
    second = _fidelity(root, *SELECT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "; 1 trainings to go" in second.stdout
    again = schema.read_fidelity(root)
    assert again is not None and len(again) == len(table)

    # SIGTERM mid-training stops the check within seconds (a bounded wait on the tasks),
    # keeping every row written so far and the trainings' state after their last epoch.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search.fidelity",
            str(root),
            "--long",
            "8xproxy",
            "--num-cpus",
            "2",
            *SELECT,
        ],
        env=search_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "trainings to go" in line:
            break
    checkpoints = root / "fidelity-checkpoints"
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("*.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)  # until a training has finished an epoch
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    returncode = process.wait(timeout=30)
    elapsed = time.monotonic() - signalled
    assert returncode == EXIT_TERMINATED, process.stdout.read()[-4000:]  # what it said
    assert elapsed <= 10
    kept = schema.read_fidelity(root)
    assert kept is not None and len(kept) >= len(table)
    saved = list(checkpoints.glob("trial*-8xproxy-seed*.pt"))
    assert saved and all(torch.load(path, weights_only=True)["epoch"] >= 1 for path in saved)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "is not a directory"),
        (["{study}", "--epochs", "3"], "must exceed every rung's and the proxy's"),
        (["{study}", "--long", "2xall", "--rungs", "3xall"], "must exceed every rung's"),
        (["{study}", "--select", "best"], "unknown selection 'best'"),
        (["{study}", "--rungs", "1xhalf"], "EPOCHSxIMAGES"),
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
    assert message in cli_error(check.PROG, check.main, filled, capsys)
    assert schema.read_fidelity(root) is None  # nothing written
    assert isinstance(load_study(root).trials, pd.DataFrame)


def _agreement(
    rung: str, kind: str, images: float, tau: float, low: float, configs: int = 16
) -> RungAgreement:
    interval = Correlation(tau, low, min(1.0, tau + 0.2))
    return RungAgreement(rung, kind, configs, 1.0, images, interval, interval, 1.0, 1.0)


def _advice_ladder(*rungs: RungAgreement) -> Ladder:
    none = Correlation(float("nan"), float("nan"), float("nan"))
    ordered = sorted(rungs, key=lambda row: row.images)  # as ladder_summary orders them
    return Ladder("6xall", "2xproxy", 3, ordered, none, pd.DataFrame(index=range(16)), failed=0)


def test_the_advice_is_the_cheapest_budget_meeting_the_rule_else_the_closest() -> None:
    ladder = _advice_ladder(
        _agreement("params", "zero-cost", 0, 0.75, 0.6),  # meets the figures: not a budget
        _agreement("1xproxy", "trained", 8_000, 0.72, 0.45),  # low end below 0.5
        _agreement("search", "search", 16_000, 0.80, 0.55),
        _agreement("2xproxy seed+1", "trained", 16_000, 0.9, 0.8),  # the ceiling, not a budget
        _agreement("4xproxy", "trained", 32_000, 0.9, 0.7),
    )
    advised = ladder.advised()
    assert advised is not None and advised[0].rung == "search" and advised[1]
    advice = ladder.advice()
    assert "is 2xproxy (the search's proxy): tau 0.80 [0.55, 1.00] over 16 configs" in advice
    assert "(search.run with the study's own settings)" in advice
    assert "zero-cost scores rank worse than the search's proxy (best: params" in advice
    assert ladder.to_dict()["advice"]["rung"] == "2xproxy"

    weak = _advice_ladder(
        _agreement("macs", "zero-cost", 0, 0.5, 0.2),
        _agreement("1xproxy", "trained", 8_000, 0.69, 0.55),  # misses by 0.01
        _agreement("search", "search", 16_000, 0.4, 0.1),
        _agreement("4xproxy", "trained", 32_000, 0.72, 0.10),  # higher tau, misses by 0.4
        _agreement("2xall", "trained", 90_000, 0.95, 0.9, configs=5),  # not over all configs
    )
    advised = weak.advised()
    assert advised is not None and advised[0].rung == "1xproxy" and not advised[1]
    advice = weak.advice()
    assert "no budget ranks like 6xall by the rule" in advice
    assert "the closest is 1xproxy: tau 0.69 [0.55, 0.89] over 16 configs" in advice
    assert "0.5x the search's proxy's (search.run --epochs 1 with the study's" in advice
    assert "rank as well as the search's proxy (best: macs" in advice
    assert weak.to_dict()["advice"]["meets_rule"] is False

    few = Ladder(
        "6xall",
        "2xproxy",
        1,
        [_agreement("1xproxy", "trained", 8_000, 1.0, 1.0, configs=3)],  # a lucky order
        Correlation(float("nan"), float("nan"), float("nan")),
        pd.DataFrame(index=range(3)),
        failed=0,
    )
    assert few.advised() is None and "too few configs to advise" in few.advice()


def test_a_rerun_sweeps_what_a_killed_check_left_but_keeps_unfinished_trainings(
    tmp_path: Path,
) -> None:
    directory = StudyDirectory(tmp_path / "study")
    directory.create()
    written = directory.fidelity_checkpoint(3, "6xall", 3)  # its row made it, then a kill
    pending = directory.fidelity_checkpoint(4, "6xall", 4)
    elsewhere = directory.fidelity_checkpoint(5, "8xall", 5)  # another plan's
    half = directory.fidelity_checkpoints / f".{pending.name}.abc123.tmp"
    directory.fidelity_checkpoints.mkdir()
    for path in (written, pending, elsewhere, half, progress_path(written), progress_path(pending)):
        path.write_bytes(b"state")
    check._sweep_checkpoints(directory, {(3, "6xall", 3), (3, "params", 3)})
    assert sorted(p.name for p in directory.fidelity_checkpoints.iterdir()) == sorted(
        [pending.name, progress_path(pending).name, elsewhere.name]
    )


def test_the_running_trainings_line_shows_each_epoch_at_most_once_a_minute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = [0.0]
    line = RunningTrainings("search.fidelity", clock=lambda: now[0])
    jobs = [
        RetrainJob(19, "{}", 19, 6, "all", checkpoint=str(tmp_path / "trial19-6xall-seed19.pt")),
        RetrainJob(24, "{}", 24, 6, "all", checkpoint=str(tmp_path / "trial24-6xall-seed24.pt")),
    ]
    line(jobs)  # no epoch has ended yet: nothing to say
    assert capsys.readouterr().out == ""

    def epoch(job: RetrainJob, number: int, seconds: float) -> None:
        path = progress_path(Path(str(job.checkpoint)))
        path.write_text(json.dumps({"epoch": number, "train_seconds": seconds}))

    epoch(jobs[0], 4, 3600.0)
    now[0] = 61.0
    line(jobs)
    assert capsys.readouterr().out == (
        "search.fidelity: trial 19 6xall: epoch 4/6 after 1 h 00 min, about 30 min 00 s to go\n"
    )
    epoch(jobs[1], 1, 300.0)
    now[0] = 90.0
    line(jobs)  # within the minute: held back
    assert capsys.readouterr().out == ""
    now[0] = 125.0
    line(jobs)
    assert "; trial 24 6xall: epoch 1/6 after 5 min 00 s, about 25 min 00 s to go" in (
        capsys.readouterr().out
    )
    now[0] = 200.0
    line(jobs)  # nothing new
    assert capsys.readouterr().out == ""
