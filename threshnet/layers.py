"""The building blocks of ThreshNet: CBR, dense units and blocks, harmonic blocks."""

from __future__ import annotations

import torch
from torch import nn

from threshnet.harmonic import harmonic_layout


class ConvBNReLU(nn.Sequential):
    """Conv k x k (no bias, padding k//2) -> BatchNorm -> ReLU (post-activation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DenseUnit(nn.Sequential):
    """DenseNet-BC unit: BN-ReLU-Conv1x1(bottleneck)-BN-ReLU-Conv3x3(growth).

    Returns only the ``growth`` new maps; the block concatenates them after its input.
    The first ReLU is in place on BatchNorm's fresh output, never on the shared input.
    """

    def __init__(self, in_channels: int, growth: int, bottleneck: int):
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, bottleneck, 1, bias=False),
            nn.BatchNorm2d(bottleneck),
            nn.ReLU(inplace=True),
            nn.Conv2d(bottleneck, growth, 3, padding=1, bias=False),
        )


class DenseBlock(nn.Module):
    """``depth`` dense units; the output is [input, new maps of unit 1, ..., unit n]."""

    def __init__(self, in_channels: int, depth: int, growth: int, bottleneck: int):
        super().__init__()
        self.units = nn.ModuleList(
            DenseUnit(in_channels + index * growth, growth, bottleneck) for index in range(depth)
        )
        self.out_channels = in_channels + depth * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x
        for unit in self.units:
            features = torch.cat([features, unit(features)], dim=1)
        return features


class HarmonicBlock(nn.Module):
    """HarDNet harmonic dense block with ThreshNet's plain ReLU and keepBase=False."""

    def __init__(self, in_channels: int, depth: int, growth: int, multiplier: float):
        super().__init__()
        self.layout = harmonic_layout(in_channels, depth, growth, multiplier)
        self.layers = nn.ModuleList(
            ConvBNReLU(inputs, width, 3)
            for inputs, width in zip(self.layout.layer_inputs, self.layout.widths[1:], strict=True)
        )
        self.out_channels = self.layout.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for links, layer in zip(self.layout.links, self.layers, strict=True):
            sources = [outputs[source] for source in links]
            inputs = sources[0] if len(sources) == 1 else torch.cat(sources, dim=1)
            outputs.append(layer(inputs))
        return torch.cat([outputs[index] for index in self.layout.kept], dim=1)
