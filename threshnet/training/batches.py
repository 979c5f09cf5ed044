"""Batches cut, augmented and normalised as whole tensors on the training device.

The dataset lives on the device as uint8 (CIFAR-10's 50k images are 150 MB); each batch
is one gather, one vectorised random crop, one flip and one fused normalise, with no
per-item Python work.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from threshnet.training.data import ImageSet

AUGMENTATIONS = ("crop-flip", "flip", "none")
STATISTICS_CHUNK = 4096  # images converted to float at a time for the channel statistics


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) of uint8 ``images`` scaled to [0, 1], shaped (1, C, 1, 1).

    Sums run chunk by chunk in float64 on the images' device, so no float copy of the
    whole set is made.
    """
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), STATISTICS_CHUNK):
        chunk = images[start : start + STATISTICS_CHUNK].to(torch.float64).div_(255.0)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = images.numel() // channels
    mean = total / count
    variance = (squares - count * mean.square()) / max(1, count - 1)  # unbiased, as Tensor.std
    std = variance.clamp_min(0).sqrt().clamp_min(1e-3)
    return (
        mean.to(torch.float32).view(1, -1, 1, 1),
        std.to(torch.float32).view(1, -1, 1, 1),
    )


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and cut a random window of the original size per image."""
    if padding == 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    device = images.device
    top = torch.randint(0, 2 * padding + 1, (batch, 1), device=device, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch, 1), device=device, generator=generator)
    rows = (top + torch.arange(height, device=device)).view(batch, 1, height, 1)
    cols = (left + torch.arange(width, device=device)).view(batch, 1, 1, width)
    channels = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
    index = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    return padded[index, channels, rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images left-right."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


@dataclass(frozen=True)
class BatchSettings:
    """How batches are produced."""

    batch_size: int
    augment: str = "none"  # one of AUGMENTATIONS
    normalize: bool = True
    input_size: int | None = None  # resize to this side; None keeps the native size
    channels_last: bool = False
    dtype: torch.dtype = torch.float32


class DeviceBatches:
    """Iterate (inputs, labels) over an ImageSet held on ``device``.

    Shuffling and augmentation draw from one device generator seeded by ``seed``, so a
    run is reproducible. Normalisation (when ``settings.normalize``) uses
    ``normalization`` = (mean, std) if given, else this data's per-channel statistics;
    pass the training batches' ``(mean, std)`` to evaluation batches.
    """

    def __init__(
        self,
        data: ImageSet,
        settings: BatchSettings,
        *,
        device: torch.device,
        shuffle: bool,
        seed: int = 0,
        normalization: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        if settings.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {settings.augment!r}")
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.settings = settings
        self.shuffle = shuffle
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        if normalization is None:
            normalization = channel_statistics(self.images)
        self.mean, self.std = (statistic.to(device) for statistic in normalization)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.settings.batch_size)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        settings = self.settings
        if settings.augment == "crop-flip":
            images = random_crop(images, max(1, images.shape[-1] // 8), self.generator)
        if settings.augment in ("crop-flip", "flip"):
            images = random_flip(images, self.generator)
        inputs = images.to(torch.float32).div_(255.0)
        if settings.normalize:
            inputs = (inputs - self.mean) / self.std
        if settings.input_size is not None and settings.input_size != inputs.shape[-1]:
            size = (settings.input_size, settings.input_size)
            inputs = F.interpolate(inputs, size=size, mode="bilinear", align_corners=False)
        if settings.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs.to(settings.dtype)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.labels)
        if self.shuffle:
            order = torch.randperm(count, device=self.device, generator=self.generator)
        else:
            order = torch.arange(count, device=self.device)
        for start in range(0, count, self.settings.batch_size):
            index = order[start : start + self.settings.batch_size]
            yield self._prepare(self.images[index]), self.labels[index]
