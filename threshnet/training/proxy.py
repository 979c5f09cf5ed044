"""The short proxy training a search trial runs: build, train, validate."""

from __future__ import annotations

import contextlib
import hashlib
import time
import warnings
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from threshnet.config import ThreshNetConfig
from threshnet.training.data import ImageSet
from threshnet.training.epoch_checkpoint import EpochCheckpoint
from threshnet.training.loops import (
    EpochStats,
    TrainingRun,
    TrainSettings,
    evaluate,
    layout_identity,
    setup_training,
    train_epoch,
)


@dataclass(frozen=True)
class ProxyResult:
    """What one proxy run measured."""

    val_acc: float
    val_loss: float
    train_loss: float
    train_acc: float
    epochs: int
    train_seconds: float
    eval_seconds: float  # the validation pass
    images_per_second: float
    seed: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def run_proxy(
    config: ThreshNetConfig | nn.Module,
    train_set: ImageSet,
    val_set: ImageSet,
    settings: TrainSettings,
    *,
    device: torch.device,
    seed: int,
    normalization: tuple[torch.Tensor, torch.Tensor] | None = None,
    around_chunk: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    on_epoch: Callable[[EpochStats], None] | None = None,
    rungs: Collection[int] = (),
    on_rung: Callable[[ProxyResult], None] | None = None,
    checkpoint: Path | None = None,
) -> ProxyResult:
    """Train ``config`` from scratch on ``train_set``; report accuracy on ``val_set``.

    After each epoch in ``rungs`` short of the full budget, the model is validated and
    ``on_rung`` gets the result so far (multi-fidelity schedulers stop trials there; the
    training itself, its schedule included, is the same as without rungs).

    Data already on ``device`` stays there (no copy); ``normalization`` is the training
    images' (mean, std) when the caller holds it (see
    :func:`threshnet.training.batches.channel_statistics`).

    With ``checkpoint`` (for a ThreshNetConfig), the state after each epoch but the last
    is kept in that file (:class:`~threshnet.training.epoch_checkpoint.EpochCheckpoint`),
    and a run given the file of the same config, settings, seed, kind of device and data
    continues after its epoch: the result is the uninterrupted run's (bit for bit on a
    CPU; a GPU's kernels need not be deterministic), its ``train_seconds`` the epochs' of
    both runs; rungs before that epoch are not reported again. The caller removes the
    file once it has kept the result.
    """
    settings.validate()
    if isinstance(config, ThreshNetConfig):
        config.validate(input_size=settings.input_size)
    elif checkpoint is not None:
        raise ValueError("a checkpoint needs a ThreshNetConfig (a network built anew)")

    def setup() -> TrainingRun:
        return setup_training(
            config,
            train_set,
            val_set,
            settings,
            device=device,
            seed=seed,
            normalization=normalization,
        )

    run = setup()
    keeper = None
    first_epoch, images, seconds_before = 1, 0, 0.0
    if checkpoint is not None:
        identity = _run_identity(run, train_set, val_set, settings, seed)
        keeper = EpochCheckpoint(checkpoint, {"config": config.to_dict(), **identity})
        saved = keeper.load()
        if saved is not None and saved["epoch"] < settings.epochs:
            try:
                run.load_state_dict(saved)
                first_epoch, images = saved["epoch"] + 1, int(saved["images"])
                seconds_before = float(saved["train_seconds"])
            except (RuntimeError, KeyError, ValueError, TypeError) as error:
                warnings.warn(
                    f"cannot continue from the checkpoint {checkpoint} "
                    f"({type(error).__name__}); training starts over",
                    stacklevel=2,
                )
                run = setup()  # a load that failed half-way may have changed the model
                first_epoch, images, seconds_before = 1, 0, 0.0
    stats = None
    start = time.perf_counter() - seconds_before
    for epoch in range(first_epoch, settings.epochs + 1):
        stats = train_epoch(
            run.model,
            run.train_batches,
            run.optimizer,
            run.scheduler,
            settings,
            epoch=epoch,
            around_chunk=around_chunk,
        )
        images += stats.images
        if keeper is not None and epoch < settings.epochs:
            saving_started = time.perf_counter()
            progress = {"images": images, "train_seconds": saving_started - start}
            keeper.save(epoch, {**run.state_dict(), **progress})
            start += time.perf_counter() - saving_started  # training time excludes saving
        if on_epoch is not None:
            on_epoch(stats)
        if on_rung is not None and epoch in rungs and epoch < settings.epochs:
            rung_started = time.perf_counter()
            on_rung(_validated(run, settings, stats, images, start, around_chunk, seed))
            start += time.perf_counter() - rung_started  # training time excludes rungs
    assert stats is not None
    return _validated(run, settings, stats, images, start, around_chunk, seed)


def _run_identity(
    run: TrainingRun, train_set: ImageSet, val_set: ImageSet, settings: TrainSettings, seed: int
) -> dict[str, Any]:
    """What a checkpoint must match to continue ``run`` (besides its config): settings,
    seed, the kind of device, and the data: the training images' normalisation (their
    per-channel mean and std) and a digest of both splits' labels, in order."""
    return {
        "settings": settings.to_dict(),
        "seed": seed,
        "device": run.train_batches.device.type,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "normalization": [run.train_batches.mean.tolist(), run.train_batches.std.tolist()],
        "labels": [_digest(train_set.labels), _digest(val_set.labels)],
        **layout_identity(settings, run.train_batches.device),
    }


def _digest(labels: torch.Tensor) -> str:
    return hashlib.sha256(labels.cpu().numpy().tobytes()).hexdigest()


def _validated(
    run: TrainingRun,
    settings: TrainSettings,
    last: EpochStats,
    images: int,
    start: float,
    around_chunk: Callable[[], AbstractContextManager[object]],
    seed: int,
) -> ProxyResult:
    """Validate ``run``'s model after epoch ``last.epoch`` (trained since ``start``)."""
    train_seconds = time.perf_counter() - start
    val_loss, val_acc = evaluate(run.model, run.eval_batches, settings, around_chunk=around_chunk)
    eval_seconds = time.perf_counter() - start - train_seconds
    return ProxyResult(
        val_acc=val_acc,
        val_loss=val_loss,
        train_loss=last.loss,
        train_acc=last.accuracy,
        epochs=last.epoch,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        images_per_second=images / train_seconds,
        seed=seed,
    )
