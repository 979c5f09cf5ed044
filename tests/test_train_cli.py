"""``threshnet.train``'s start banner, progress within an epoch, and --max-train-images /
--max-test-images; run in-process on a tiny config and a tiny ImageFolder."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_image_folder

import threshnet.training.loops as loops
import threshnet.training.train as train
from threshnet.cli import UserError, run_cli
from threshnet.config import StageConfig, ThreshNetConfig
from threshnet.costs import static_costs
from threshnet.training.data import ImageSet

TINY = ThreshNetConfig(
    stages=(StageConfig(2, 8, 16, True), StageConfig(2, 8, 32, False)),
    threshold=1,
    stem=(8, 16),
    num_classes=3,
)
PROGRESS = re.compile(
    r"^  epoch (\d+)/(\d+): (\d+)/(\d+) images \(\d+%\), \d+ images/s, epoch ETA "
)
EPOCH = re.compile(r"^epoch (\d+)/(\d+)  lr .* s  ETA (\d+ s|\d+ min \d+ s|\d+ h \d+ min)$")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 images of each of 3 classes in both splits (24 + 24)."""
    return write_image_folder(tmp_path_factory.mktemp("data"), per_class=8)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    TINY.save(path)
    return path


def _args(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    cache = data.parent / "cache"
    return [
        *("--config", str(config), "--data-dir", str(data), "--cache-dir", str(cache)),
        *("--out", str(out), "--device", "cpu", "--seed", "3", "--batch-size", "4"),
        *("--epochs", "1", *extra),
    ]


def test_banner_and_subsets(
    config: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = _args(config, data, out, "--max-train-images", "12", "--max-test-images", "6")
    assert train.main(args) == 0
    text = capsys.readouterr().out
    banner = text.split("\nepoch 1/1")[0]
    costs = static_costs(TINY, 32)
    assert banner.startswith(f"threshnet.train: tiny (config {config})\n")
    for expected in (
        "depth 10, threshold 1 (1 dense + 1 harmonic stages), units 2/2, growth 8/8",
        f"{costs.params / 1e3:.2f} k params, {costs.macs / 1e6:.2f} M MACs at 32x32",
        f"data      {data}: train 12 of 24 images (--max-train-images 12, stratified, seed 3)",
        "test 6 of 24 images (--max-test-images 6, stratified, seed 3), 3 classes",
        "device    cpu (",
        "1 epoch, batch 4, adam lr 0.001, multistep (x0.5 at epochs 75, 150) schedule",
        f"run       {out} (new run)",
        "this run uses a subset of the data",
    ):
        assert expected in banner, expected
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["train_images"], summary["test_images"]) == (12, 6)
    assert (summary["max_train_images"], summary["max_test_images"]) == (12, 6)

    # the same command resumes (nothing left to train); other subsets are refused in one line
    assert train.main(args) == 0
    assert f"run       {out} (resuming after epoch 1 of 1)" in capsys.readouterr().out
    other = _args(config, data, out, "--max-train-images", "18", "--max-test-images", "6")
    assert run_cli(train.PROG, train.main, other) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "holds a run with another config or settings (max_train_images 12 there, 18 here)" in (
        error
    )
    whole = _args(config, data, out)
    assert run_cli(train.PROG, train.main, whole) == 2
    assert "max_train_images 12 there, unset here; max_test_images 6 there, unset here" in (
        capsys.readouterr().err
    )


def test_a_run_on_all_the_data_says_so(
    config: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train.main(_args(config, data, tmp_path / "run")) == 0
    text = capsys.readouterr().out
    assert "train 24 images, test 24 images, 3 classes" in text
    assert "subset" not in text
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["train_images"], summary["test_images"]) == (24, 24)
    assert summary["max_train_images"] is None and "max_train_images" not in summary["settings"]


def test_subsets_are_stratified_and_seeded() -> None:
    labels = torch.arange(3).repeat_interleave(torch.tensor([20, 10, 30]))
    data = ImageSet(torch.zeros(60, 3, 8, 8, dtype=torch.uint8), labels, ("a", "b", "c"))
    subset = train._subset(data, 30, seed=1, flag="--max-train-images", split="train")
    assert torch.bincount(subset.labels).tolist() == [10, 5, 15]
    again = train._subset(data, 30, seed=1, flag="--max-train-images", split="train")
    assert torch.equal(subset.images, again.images) and torch.equal(subset.labels, again.labels)
    assert train._subset(data, 60, seed=1, flag="--max-train-images", split="train") is data
    with pytest.raises(UserError, match="--max-test-images 2 is fewer than the 3 classes"):
        train._subset(data, 2, seed=1, flag="--max-test-images", split="test")


def test_progress_lines_in_a_log(
    config: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loops, "CHECK_EVERY_STEPS", 1)  # a chunk (and a report) per batch
    monkeypatch.setattr(train, "PROGRESS_LOG", (0.0, 0.25))
    assert train.main([*_args(config, data, tmp_path / "run"), "--epochs", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any("\r" in line for line in lines)
    progress = [(i, PROGRESS.match(line)) for i, line in enumerate(lines) if PROGRESS.match(line)]
    epochs = [(i, EPOCH.match(line)) for i, line in enumerate(lines) if EPOCH.match(line)]
    assert [match.group(1, 2) for _, match in epochs] == [("1", "2"), ("2", "2")]
    assert epochs[-1][1].group(3) == "0 s"
    for epoch, (end, _) in enumerate(epochs, start=1):
        begin = epochs[epoch - 2][0] if epoch > 1 else 0
        done = [int(m.group(3)) for i, m in progress if begin < i < end]
        # batches of 4 of 24 images, a line once 25 % (6 images) more are done, none at 24
        assert done == [8, 16], (epoch, lines)
        assert all(m.group(4) == "24" for _, m in progress)


def test_progress_on_a_terminal_is_rewritten_in_place(
    config: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loops, "CHECK_EVERY_STEPS", 1)
    monkeypatch.setattr(train, "PROGRESS_TERMINAL", (0.0, 0.1))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert train.main(_args(config, data, tmp_path / "run")) == 0
    out = capsys.readouterr().out
    rewritten = out.split("run       ")[1].split("\n", 1)[1].split("\n")[0]
    parts = rewritten.split("\r\033[K")
    assert parts[0] == "" and parts[-1].startswith("epoch 1/1  lr ")
    assert [part.split(":")[0] for part in parts[1:-1]] == ["  epoch 1/1"] * (len(parts) - 2)
    assert [PROGRESS.match(part).group(3) for part in parts[1:-2]] == ["4", "8", "12", "16", "20"]
    assert parts[-2] == "  epoch 1/1: testing on 24 images"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "expected"),
    # a line once 5 s have passed and 10 % more images are done on a terminal, 10 s and
    # 25 % in a log; never at the end of the epoch (its own line comes next)
    [(_Terminal(), [200, 400, 520, 700, 800]), (io.StringIO(), [400, 700])],
)
def test_progress_is_rare(
    stream: io.StringIO, expected: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # (seconds since the epoch started, images done) after each chunk
    chunks = [(1, 100), (6, 200), (7, 280), (12, 400), (17, 520), (18, 600), (23, 700)]
    chunks += [(30, 750), (36, 800), (40, 1000)]
    progress = train._EpochProgress(total_images=1000, epochs=3, stream=stream)
    clock = iter([0.0] + [float(seconds) for seconds, _ in chunks])
    monkeypatch.setattr(train.time, "perf_counter", lambda: next(clock))
    progress.start(2)
    for _, images in chunks:
        progress(images)
    text = stream.getvalue()
    assert [int(m) for m in re.findall(r"  epoch 2/3: (\d+)/1000 images", text)] == expected
    assert ("\r" in text) == isinstance(stream, _Terminal)
    progress.end()
    assert stream.getvalue().endswith("\r\033[K" if isinstance(stream, _Terminal) else "\n")
