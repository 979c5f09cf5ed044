"""The one ThreshNet builder: any valid config -> nn.Module."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from threshnet.config import ThreshNetConfig
from threshnet.harmonic import harmonic_layout
from threshnet.layers import ConvBNReLU, DenseBlock, HarmonicBlock


class ThreshNet(nn.Module):
    """Stem, then per stage a dense or harmonic block, a 1x1 transition, an optional
    2x2 max-pool; then global average pooling and a linear classifier."""

    def __init__(self, config: ThreshNetConfig):
        super().__init__()
        config.validate()
        self.config = config
        first, second = config.stem
        self.stem = nn.Sequential(
            ConvBNReLU(3, first, 3, stride=2),
            ConvBNReLU(first, second, 3),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        channels = second
        stages = []
        for index, stage in enumerate(config.stages):
            if config.is_dense(index):
                block = DenseBlock(channels, stage.depth, stage.growth, config.bottleneck)
            else:
                block = HarmonicBlock(channels, stage.depth, stage.growth, stage.multiplier)
            parts = [block, ConvBNReLU(block.out_channels, stage.transition, 1)]
            if stage.downsample:
                parts.append(nn.MaxPool2d(kernel_size=2, stride=2))
            stages.append(nn.Sequential(*parts))
            channels = stage.transition
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)  # a module, as in the authors' head, so it is profiled
        self.classifier = nn.Linear(channels, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before global pooling."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.forward_features(x))))


def build_model(config: ThreshNetConfig) -> ThreshNet:
    """Build the network described by ``config``."""
    return ThreshNet(config)


@dataclass(frozen=True)
class StageSummary:
    """Shape of one stage: connection type, channels in/out and spatial size."""

    index: int
    kind: str  # "dense" or "harmonic"
    depth: int
    growth: int
    multiplier: float | None  # None for dense stages, where it has no effect
    in_channels: int
    block_channels: int
    out_channels: int
    downsample: bool
    feature_size: int


def describe_stages(config: ThreshNetConfig, input_size: int) -> list[StageSummary]:
    """Per-stage channels and feature-map sizes, computed from the config alone."""
    sizes = config.feature_sizes(input_size)
    channels = config.stem[1]
    summaries = []
    for index, (stage, size) in enumerate(zip(config.stages, sizes, strict=True)):
        dense = config.is_dense(index)
        if dense:
            block_channels = channels + stage.depth * stage.growth
        else:
            block_channels = harmonic_layout(
                channels, stage.depth, stage.growth, stage.multiplier
            ).out_channels
        summaries.append(
            StageSummary(
                index=index,
                kind="dense" if dense else "harmonic",
                depth=stage.depth,
                growth=stage.growth,
                multiplier=None if dense else stage.multiplier,
                in_channels=channels,
                block_channels=block_channels,
                out_channels=stage.transition,
                downsample=stage.downsample,
                feature_size=size,
            )
        )
        channels = stage.transition
    return summaries
