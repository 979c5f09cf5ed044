"""Export the winners of a smoke study, profile them, train one and resume after a kill."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SmokeStudy, fault_env

from studies.export import PROG as EXPORT
from studies.export import main as export_main
from threshnet.cli import run_cli
from threshnet.config import ThreshNetConfig
from threshnet.profile import main as profile_main
from threshnet.train import PROG as TRAIN
from threshnet.train import main as train_main

pytestmark = pytest.mark.slow


def test_export_writes_loadable_configs_and_an_index(
    smoke_study: SmokeStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "configs"
    assert run_cli(EXPORT, export_main, [str(smoke_study.root), "--out", str(out)]) == 0
    with open(out / "index.csv", newline="") as handle:
        index = list(csv.DictReader(handle))
    assert index and all(row["on_front"] == "True" for row in index)
    with open(smoke_study.root / "trials.csv", newline="") as handle:
        trials = {row["number"]: row for row in csv.DictReader(handle)}
    for row in index:
        config = ThreshNetConfig.load(out / row["file"])
        trial = trials[row["trial"]]
        assert config == ThreshNetConfig.from_json(trial["config_json"])
        assert float(row["val_acc"]) == pytest.approx(float(trial["val_acc"]))
        assert int(row["params"]) == int(trial["params"])
    capsys.readouterr()
    assert profile_main(["--config", str(out / index[0]["file"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == int(index[0]["params"])

    chosen = tmp_path / "chosen"
    assert (
        run_cli(
            EXPORT, export_main, [str(smoke_study.root), "--trial", "0", "2", "--out", str(chosen)]
        )
        == 0
    )
    names = sorted(p.name for p in chosen.glob("*.json"))
    assert names == ["trial-0000-threshnet28.json", "trial-0002-threshnet95.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--trial", "99"], "has no trial(s) 99"), (["--trial", "3"], "has status 'failed'")],
)
def test_export_errors(
    smoke_study: SmokeStudy, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(EXPORT, export_main, [str(smoke_study.root), *args]) == 2
    assert message in capsys.readouterr().err


def _train(
    config: Path, data: Path, out: Path, epochs: int, **faults: str
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "threshnet.train",
        "--config",
        str(config),
        "--data-dir",
        str(data),
        "--cache-dir",
        str(out.parent / "cache"),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--device",
        "cpu",
        "--seed",
        "3",
        "--batch-size",
        "16",
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, env=fault_env(**faults)
    )


# Three trainings in subprocesses; in CI, the training loop's kill-and-continue is
# tests/test_training.py's (in process).
@pytest.mark.long
def test_training_an_exported_config_resumes_identically(
    smoke_study: SmokeStudy, tiny_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "configs"
    assert run_cli(EXPORT, export_main, [str(smoke_study.root), "--out", str(out)]) == 0
    config = sorted(out.glob("*.json"))[0]

    straight = _train(config, tiny_folder, tmp_path / "straight", 2)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "final-epoch test accuracy" in straight.stdout
    assert "best-epoch test accuracy" in straight.stdout

    killed = _train(
        config, tiny_folder, tmp_path / "resumed", 2, THRESHNET_TRAIN_EXIT_AFTER_EPOCH="1"
    )
    assert killed.returncode == 17 and "epoch 1/2" in killed.stdout
    assert not (tmp_path / "resumed" / "summary.json").exists()
    resumed = _train(config, tiny_folder, tmp_path / "resumed", 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout and "epoch 1/2" not in resumed.stdout

    def metrics(run: str) -> list[dict[str, str]]:
        with open(tmp_path / run / "metrics.csv", newline="") as handle:
            return [
                {k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)
            ]

    assert metrics("straight") == metrics("resumed")
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["best_epoch_test_acc"] >= summary["final_epoch_test_acc"]


def test_a_checkpoint_that_is_not_ours_is_refused(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"\x80\x04not a checkpoint")
    code = run_cli(
        TRAIN,
        train_main,
        [
            "--preset",
            "threshnet28",
            "--data-dir",
            str(tiny_folder),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--device",
            "cpu",
        ],
    )
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "is not a readable threshnet checkpoint" in error and len(error.splitlines()) == 1
    assert "weights_only" not in error  # no advice to run the file's code
