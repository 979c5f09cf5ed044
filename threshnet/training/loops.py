"""Training and evaluation loops shared by the search proxy and full training.

The loops train in channels_last (on CPU too: never slower there at the median and up to
1.7x faster, BENCHMARKS.md "CPU speed"), and on CUDA with bf16 autocast and cudnn benchmark;
batches come
from :class:`~threshnet.training.batches.DeviceBatches`, so nothing runs per item in Python. A
non-finite loss stops training with :class:`NonFiniteLossError`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from threshnet.config import ThreshNetConfig, dataclass_kwargs
from threshnet.model import build_model
from threshnet.training.batches import AUGMENTATIONS, BatchSettings, DeviceBatches
from threshnet.training.data import ImageSet

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "multistep", "constant")
CHECK_EVERY_STEPS = 25  # how often the loss is checked for NaN/inf (each check syncs)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser, schedule, batches and precision of a training run."""

    epochs: int = 5
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup_fraction: float = 0.2  # onecycle: linear ramp up, then linear decay to zero
    milestones: tuple[int, ...] = (75, 150)  # multistep: 1-based epochs where lr drops
    gamma: float = 0.5
    label_smoothing: float = 0.1
    augment: str = "crop-flip"
    normalize: bool = True
    input_size: int = 32
    eval_batch_size: int = 1000
    amp: bool = True  # bf16 autocast, on CUDA only
    channels_last: bool = True  # NHWC memory layout, on every device

    def validate(self) -> None:
        """Raise ValueError naming the setting that is out of range."""
        checks = [
            ("epochs", self.epochs >= 1),
            ("batch_size", self.batch_size >= 1),
            ("eval_batch_size", self.eval_batch_size >= 1),
            ("lr", self.lr > 0 and math.isfinite(self.lr)),
            ("weight_decay", 0 <= self.weight_decay < math.inf),
            ("momentum", 0 <= self.momentum < 1),
            ("warmup_fraction", 0 <= self.warmup_fraction < 1),
            ("gamma", 0 < self.gamma <= 1),
            ("label_smoothing", 0 <= self.label_smoothing < 1),
            ("input_size", self.input_size >= 8),
            ("optimizer", self.optimizer in OPTIMIZERS),
            ("schedule", self.schedule in SCHEDULES),
            ("augment", self.augment in AUGMENTATIONS),
            ("milestones", all(milestone >= 1 for milestone in self.milestones)),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"training setting {name}={getattr(self, name)!r} is not allowed")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSettings:
        """Inverse of :meth:`to_dict`; ValueError names an unknown key."""
        values = dataclass_kwargs(cls, data, "training settings")
        if "milestones" in values:
            values["milestones"] = tuple(values["milestones"])
        return cls(**values)


@dataclass(frozen=True)
class EpochStats:
    """One epoch of training."""

    epoch: int
    loss: float
    accuracy: float
    lr: float
    seconds: float
    images: int


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """SGD (Nesterov), Adam or AdamW; no weight decay on BN and bias parameters."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=True)
    if settings.optimizer == "adam":
        return torch.optim.Adam(groups, lr=settings.lr)
    return torch.optim.AdamW(groups, lr=settings.lr)


def lr_factor(step: int, steps_per_epoch: int, settings: TrainSettings) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    if settings.schedule == "constant":
        return 1.0
    if settings.schedule == "multistep":
        epoch = step // steps_per_epoch + 1  # 1-based, as the authors' scheduler.step(epoch)
        return settings.gamma ** sum(epoch >= milestone for milestone in settings.milestones)
    total = settings.epochs * steps_per_epoch
    warmup = max(1, round(settings.warmup_fraction * total))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def make_scheduler(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, settings: TrainSettings
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR following :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, settings)
    )


def _autocast(device: torch.device, settings: TrainSettings) -> AbstractContextManager[None]:
    if device.type == "cuda" and settings.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_settings(settings: TrainSettings, device: torch.device, *, train: bool) -> BatchSettings:
    """The batch settings a training or evaluation pass uses on ``device``."""
    return BatchSettings(
        batch_size=settings.batch_size if train else settings.eval_batch_size,
        augment=settings.augment if train else "none",
        normalize=settings.normalize,
        input_size=settings.input_size,
        channels_last=settings.channels_last,
    )


def layout_identity(settings: TrainSettings, device: torch.device) -> dict[str, str]:
    """What a checkpoint's identity records of the memory layout its run trains in, where
    that differs from before channels_last reached the CPU (runs there trained contiguous):
    a checkpoint from then does not match, and its run starts over rather than going on in
    another layout (which would not give the result of an uninterrupted run)."""
    if device.type != "cuda" and settings.channels_last:
        return {"layout": "channels_last"}
    return {}


def prepare_model(model: nn.Module, device: torch.device, settings: TrainSettings) -> nn.Module:
    """Move ``model`` to ``device`` (channels_last as set; cudnn benchmark on CUDA)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if settings.channels_last:
        return model.to(device=device, memory_format=torch.channels_last)
    return model.to(device)


def train_epoch(
    model: nn.Module,
    batches: DeviceBatches,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: TrainSettings,
    *,
    epoch: int,
    around_chunk: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    on_chunk: Callable[[int], None] | None = None,
) -> EpochStats:
    """One pass over ``batches``; returns mean loss and accuracy.

    ``around_chunk`` is a hook: a context manager entered around each chunk of up to
    CHECK_EVERY_STEPS optimiser steps and left only after the device has finished that
    chunk's work (the chunk ends with the loss check, which synchronises).
    ``on_chunk(images)``, when given, is called after each chunk has been left, with the
    images trained on so far in this epoch: a progress hook that adds no synchronisation.
    """
    device = batches.device
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    images = 0
    lr = optimizer.param_groups[0]["lr"]
    start = time.perf_counter()
    iterator = iter(batches)
    exhausted = False
    while not exhausted:
        with around_chunk():
            for _ in range(CHECK_EVERY_STEPS):
                try:
                    inputs, labels = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                with _autocast(device, settings):
                    logits = model(inputs)
                    loss = criterion(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach() * labels.shape[0]
                correct += (logits.argmax(1) == labels).sum()
                images += labels.shape[0]
            total_loss = loss_sum.item()  # synchronises: the slot ends with the work done
        if not math.isfinite(total_loss):
            raise NonFiniteLossError(f"training loss became {total_loss} in epoch {epoch}")
        if on_chunk is not None:
            on_chunk(images)
    return EpochStats(
        epoch=epoch,
        loss=total_loss / max(1, images),
        accuracy=correct.item() / max(1, images),
        lr=lr,
        seconds=time.perf_counter() - start,
        images=images,
    )


def evaluate(
    model: nn.Module,
    batches: DeviceBatches,
    settings: TrainSettings,
    *,
    around_chunk: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` over ``batches``.

    ``around_chunk`` is entered once around the whole pass, as in :func:`train_epoch`.
    """
    device = batches.device
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    with around_chunk(), torch.inference_mode():
        for inputs, labels in batches:
            with _autocast(device, settings):
                logits = model(inputs).float()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
        count = len(batches.labels)
        return loss_sum.item() / count, correct.item() / count


@dataclass
class TrainingRun:
    """A model with its batches, optimiser and schedule, ready for :func:`train_epoch`."""

    model: nn.Module
    train_batches: DeviceBatches
    eval_batches: DeviceBatches
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR

    def state_dict(self) -> dict[str, Any]:
        """What continues this run after an epoch as if it had not stopped (bit for bit
        on a CPU): the model, optimiser, schedule, the generator behind shuffling and
        augmentation, and torch's global generators (dropout, in networks that have it)."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "batch_generator": self.train_batches.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.train_batches.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.train_batches.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (of a run set up the same way, on
        the same kind of device; a state from before the global generators were kept
        leaves them as they are)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.train_batches.generator.set_state(state["batch_generator"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.train_batches.device)


def setup_training(
    config: ThreshNetConfig | nn.Module,
    train_set: ImageSet,
    eval_set: ImageSet,
    settings: TrainSettings,
    *,
    device: torch.device,
    seed: int,
    normalization: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TrainingRun:
    """Seeded model on ``device``, batches (evaluation normalised like training), optimiser
    and per-step schedule. ``config`` may also be a network already built (another
    family, e.g. a baseline): it is trained as it is. ``normalization`` = (mean, std) of
    the training images when already known (else computed from ``train_set``)."""
    torch.manual_seed(seed)
    network = build_model(config) if isinstance(config, ThreshNetConfig) else config
    model = prepare_model(network, device, settings)
    train_batches = DeviceBatches(
        train_set,
        batch_settings(settings, device, train=True),
        device=device,
        shuffle=True,
        seed=seed,
        normalization=normalization,
    )
    eval_batches = DeviceBatches(
        eval_set,
        batch_settings(settings, device, train=False),
        device=device,
        shuffle=False,
        normalization=(train_batches.mean, train_batches.std),
    )
    optimizer = make_optimizer(model, settings)
    scheduler = make_scheduler(optimizer, len(train_batches), settings)
    return TrainingRun(model, train_batches, eval_batches, optimizer, scheduler)
