"""Batches, augmentation, schedules and the proxy loop on tiny data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from threshnet.config import StageConfig, ThreshNetConfig
from threshnet.training.batches import (
    BatchSettings,
    DeviceBatches,
    channel_statistics,
    random_crop,
    random_flip,
)
from threshnet.training.data import ImageSet, load_split, stratified_split
from threshnet.training.epoch_checkpoint import read_progress
from threshnet.training.loops import (
    EpochStats,
    NonFiniteLossError,
    TrainSettings,
    lr_factor,
    setup_training,
)
from threshnet.training.proxy import run_proxy

TINY = ThreshNetConfig(
    stages=(StageConfig(2, 8, 16, True), StageConfig(2, 8, 32, False)),
    threshold=1,
    stem=(8, 16),
    num_classes=3,
)


def test_random_crop_cuts_windows_of_the_padded_image() -> None:
    images = torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    crops = random_crop(images, 2, generator)
    padded = F.pad(images, (2, 2, 2, 2))
    assert crops.shape == images.shape
    for image, crop in zip(padded, crops, strict=True):
        windows = [
            image[:, top : top + 8, left : left + 8] for top in range(5) for left in range(5)
        ]
        assert any(torch.equal(crop, window) for window in windows)


def test_random_flip_mirrors_some_images_only() -> None:
    images = torch.randint(0, 255, (64, 3, 4, 4), dtype=torch.uint8)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    same = [torch.equal(a, b) for a, b in zip(flipped, images, strict=True)]
    mirrored = [torch.equal(a, b.flip(2)) for a, b in zip(flipped, images, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 10 < sum(mirrored) < 54


def test_batches_cover_each_image_once_per_epoch_and_are_seeded() -> None:
    data = ImageSet(
        torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 4, 4).contiguous(),
        torch.arange(50),
        tuple("abcde"),
    )
    settings = BatchSettings(batch_size=16, augment="none", normalize=False)
    batches = DeviceBatches(data, settings, device=torch.device("cpu"), shuffle=True, seed=3)
    assert len(batches) == 4
    epoch_one = [(inputs, labels) for inputs, labels in batches]
    labels = torch.cat([labels for _, labels in epoch_one])
    assert sorted(labels.tolist()) == list(range(50))
    inputs, first_labels = epoch_one[0]
    assert torch.allclose(inputs[:, 0, 0, 0] * 255, first_labels.float())
    again = DeviceBatches(data, settings, device=torch.device("cpu"), shuffle=True, seed=3)
    assert torch.equal(torch.cat([labels for _, labels in again]), labels)
    epoch_two = torch.cat([labels for _, labels in batches])
    assert not torch.equal(epoch_two, labels)


def test_authors_multistep_schedule() -> None:
    settings = TrainSettings(schedule="multistep", epochs=200, lr=1e-3, milestones=(75, 150))
    steps = 500
    factors = {
        epoch: lr_factor((epoch - 1) * steps, steps, settings)
        for epoch in (1, 74, 75, 149, 150, 200)
    }
    assert factors == {1: 1.0, 74: 1.0, 75: 0.5, 149: 0.5, 150: 0.25, 200: 0.25}


def test_onecycle_warms_up_then_decays_to_zero() -> None:
    settings = TrainSettings(epochs=10, warmup_fraction=0.2)
    factors = [lr_factor(step, 10, settings) for step in range(100)]
    assert max(factors) == 1.0 and factors.index(1.0) == 19
    assert factors[0] < 0.1 and factors[-1] < 0.02


def test_proxy_learns_a_separable_tiny_dataset(tiny_folder: Path, tmp_path: Path) -> None:
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    train_idx, val_idx = stratified_split(data.labels, 9, seed=0)
    settings = TrainSettings(epochs=6, batch_size=9, lr=0.05, eval_batch_size=64)
    epochs = []
    result = run_proxy(
        TINY,
        data.subset(train_idx),
        data.subset(val_idx),
        settings,
        device=torch.device("cpu"),
        seed=0,
        on_epoch=epochs.append,
    )
    assert [stats.epoch for stats in epochs] == list(range(1, 7))
    assert epochs[-1].loss < epochs[0].loss
    assert result.val_acc >= 2 / 3
    assert result.epochs == 6 and result.images_per_second > 0


def test_non_finite_loss_stops_training(tiny_folder: Path, tmp_path: Path) -> None:
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    settings = TrainSettings(epochs=3, batch_size=9, lr=1e30, schedule="constant", optimizer="sgd")
    with pytest.raises(NonFiniteLossError, match="training loss became"):
        run_proxy(TINY, data, data, settings, device=torch.device("cpu"), seed=0)


def test_bad_training_settings() -> None:
    with pytest.raises(ValueError, match="optimizer='lbfgs'"):
        TrainSettings(optimizer="lbfgs").validate()
    with pytest.raises(ValueError, match=r"training settings: unknown key.*learning_rate"):
        TrainSettings.from_dict({"epochs": 2, "learning_rate": 0.1})


def test_settings_round_trip_through_json() -> None:
    settings = TrainSettings(epochs=7, milestones=(3, 5), lr=0.05, augment="flip")
    assert TrainSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_channel_statistics_match_a_float_copy_of_the_images() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5000, 3, 8, 8), dtype=torch.uint8, generator=generator)
    mean, std = channel_statistics(images)  # in chunks, without a float copy of the set
    pixels = images.to(torch.float64) / 255.0
    assert mean.shape == std.shape == (1, 3, 1, 1) and mean.dtype == torch.float32
    assert torch.allclose(mean.flatten().double(), pixels.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(std.flatten().double(), pixels.std(dim=(0, 2, 3)), atol=1e-6)


class _Killed(Exception):
    """Stands for a kill between two epochs."""


def _stop_after(epoch: int) -> Callable[[EpochStats], None]:
    def on_epoch(stats: EpochStats) -> None:
        if stats.epoch == epoch:
            raise _Killed

    return on_epoch


def test_a_proxy_run_killed_after_an_epoch_continues_as_if_never_stopped(
    tiny_folder: Path, tmp_path: Path
) -> None:
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    train_idx, val_idx = stratified_split(data.labels, 9, seed=0)
    train, val = data.subset(train_idx), data.subset(val_idx)
    settings = TrainSettings(epochs=3, batch_size=9, lr=0.05, eval_batch_size=64)
    cpu = torch.device("cpu")
    straight = run_proxy(TINY, train, val, settings, device=cpu, seed=0)

    path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(_Killed):
        run_proxy(
            TINY, train, val, settings, device=cpu, seed=0, checkpoint=path, on_epoch=_stop_after(1)
        )
    assert torch.load(path, weights_only=True)["epoch"] == 1
    progress = read_progress(path)  # what the fidelity check's running line reads
    assert progress is not None and progress["epoch"] == 1 and progress["train_seconds"] > 0
    epochs: list[EpochStats] = []
    resumed = run_proxy(
        TINY, train, val, settings, device=cpu, seed=0, checkpoint=path, on_epoch=epochs.append
    )
    assert [stats.epoch for stats in epochs] == [2, 3]  # epoch 1 was not trained again
    assert (resumed.val_loss, resumed.val_acc, resumed.train_loss, resumed.epochs) == (
        straight.val_loss,
        straight.val_acc,
        straight.train_loss,
        3,
    )
    assert torch.load(path, weights_only=True)["epoch"] == 2  # the last epoch saves nothing
    assert resumed.train_seconds > sum(stats.seconds for stats in epochs)  # epoch 1's counted


def _killed_after_one_epoch(
    data: ImageSet, path: Path, *, seed: int
) -> tuple[TrainSettings, torch.device, Path]:
    """A 2-epoch tiny run on the CPU killed after its first epoch, its checkpoint at
    ``path``: the settings, device and path to go on with."""
    settings = TrainSettings(epochs=2, batch_size=9, lr=0.05, eval_batch_size=64)
    cpu = torch.device("cpu")
    with pytest.raises(_Killed):
        run_proxy(
            TINY,
            data,
            data,
            settings,
            device=cpu,
            seed=seed,
            checkpoint=path,
            on_epoch=_stop_after(1),
        )
    return settings, cpu, path


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_not_used(
    tiny_folder: Path, tmp_path: Path
) -> None:
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    settings, cpu, path = _killed_after_one_epoch(data, tmp_path / "checkpoint.pt", seed=1)
    epochs: list[EpochStats] = []
    other_seed = run_proxy(
        TINY, data, data, settings, device=cpu, seed=2, checkpoint=path, on_epoch=epochs.append
    )
    assert [stats.epoch for stats in epochs] == [1, 2]
    assert other_seed.val_loss == run_proxy(TINY, data, data, settings, device=cpu, seed=2).val_loss

    path.write_bytes(b"not a checkpoint, cut short by a crash")
    epochs.clear()
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        run_proxy(
            TINY, data, data, settings, device=cpu, seed=2, checkpoint=path, on_epoch=epochs.append
        )
    assert [stats.epoch for stats in epochs] == [1, 2]
    assert torch.load(path, weights_only=True)["epoch"] == 1  # replaced by this run's


def test_a_checkpoint_of_other_data_or_one_that_does_not_load_starts_over(
    tiny_folder: Path, tmp_path: Path
) -> None:
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    first, second = stratified_split(data.labels, 18, seed=0)
    other, _ = stratified_split(data.labels, 18, seed=1)  # as many images, others
    settings = TrainSettings(epochs=2, batch_size=9, lr=0.05, eval_batch_size=64)
    cpu = torch.device("cpu")
    path = tmp_path / "checkpoint.pt"

    def train(
        indices: torch.Tensor, on_epoch: Callable[[EpochStats], None] | None = None
    ) -> list[int]:
        """The epochs a run trained (it stops where ``on_epoch`` raises)."""
        epochs: list[EpochStats] = []

        def seen(stats: EpochStats) -> None:
            epochs.append(stats)
            if on_epoch is not None:
                on_epoch(stats)

        run_proxy(
            TINY,
            data.subset(indices),
            data.subset(second),
            settings,
            device=cpu,
            seed=0,
            checkpoint=path,
            on_epoch=seen,
        )
        return [stats.epoch for stats in epochs]

    with pytest.raises(_Killed):
        train(first, on_epoch=_stop_after(1))
    assert len(other) == len(first) and train(other) == [1, 2]  # not the same images

    with pytest.raises(_Killed):
        train(first, on_epoch=_stop_after(1))
    state = torch.load(path, weights_only=True)
    state["batch_generator"] = torch.zeros(16, dtype=torch.uint8)  # as a GPU's would be
    torch.save(state, path)
    with pytest.warns(UserWarning, match="cannot continue from the checkpoint"):
        assert train(first) == [1, 2]


def test_a_training_state_holds_torchs_global_generator(tiny_folder: Path, tmp_path: Path) -> None:
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    settings = TrainSettings(epochs=1, batch_size=9)
    run = setup_training(TINY, data, data, settings, device=torch.device("cpu"), seed=0)
    state = run.state_dict()
    drawn = torch.rand(4)  # as dropout would draw
    run.load_state_dict(state)
    assert torch.equal(torch.rand(4), drawn)


def test_channels_last_trains_on_cpu_with_the_same_arithmetic(
    tiny_folder: Path, tmp_path: Path
) -> None:
    # channels_last is a memory layout: adopted on CPU for speed, it must not change what
    # the proxy learns beyond summation order
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    results = {}
    for layout in (True, False):
        settings = TrainSettings(epochs=3, batch_size=9, lr=0.05, channels_last=layout)
        epochs: list[EpochStats] = []
        result = run_proxy(
            TINY, data, data, settings, device=torch.device("cpu"), seed=0, on_epoch=epochs.append
        )
        results[layout] = [stats.loss for stats in epochs] + [result.val_loss]
    assert results[True] == pytest.approx(results[False], rel=1e-4)


def test_a_cpu_checkpoint_from_before_channels_last_is_not_continued(
    tiny_folder: Path, tmp_path: Path
) -> None:
    # CPU runs trained contiguous until channels_last was adopted there: going on from
    # such a checkpoint in the other layout would not give an uninterrupted run's result
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    settings, cpu, path = _killed_after_one_epoch(data, tmp_path / "checkpoint.pt", seed=0)
    state = torch.load(path, weights_only=True)
    identity = json.loads(state["identity"])
    assert identity.pop("layout") == "channels_last"
    state["identity"] = json.dumps(identity, sort_keys=True, default=str)  # as before
    torch.save(state, path)
    epochs: list[EpochStats] = []
    run_proxy(
        TINY, data, data, settings, device=cpu, seed=0, checkpoint=path, on_epoch=epochs.append
    )
    assert [stats.epoch for stats in epochs] == [1, 2]


def test_the_model_and_its_batches_are_channels_last_on_cpu(
    tiny_folder: Path, tmp_path: Path
) -> None:
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    run = setup_training(
        TINY, data, data, TrainSettings(batch_size=9), device=torch.device("cpu"), seed=0
    )
    weight = next(p for p in run.model.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    inputs, _ = next(iter(run.train_batches))
    assert inputs.is_contiguous(memory_format=torch.channels_last)
