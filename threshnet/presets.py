"""Published ThreshNet models (and a HarDNet68-style baseline) as configs of one builder.

ThreshNet79 and ThreshNet95 follow the authors' released model files exactly
(``RuiyangJu/ThreshNet`` C10-demo/models). ThreshNet28 was never released: its preset
is a RECONSTRUCTION, the "R5" stand-in of the spec (section 3b), chosen because it keeps
ThreshNet's five-stage skeleton (threshold 3, pools 1,1,0,1,0, stem 32/64, dense growth
32, bottleneck 128, harmonic m=1.7), so it is a point of the same search space as 79/95.
How close it gets to the published figures (measured by ``python -m threshnet.profile
--preset threshnet28 --input-size 224``; torchstat rules at 3x224x224):

    figure            published   ours         off by
    params            10.18 M     10,180,718   +0.01 %
    FLOPs (torchstat) 2.28 G      2.217 G      -2.8 %
    MAdd (torchstat)  4.55 G      4.419 G      -2.9 %
    memory (torchstat) 83.26 MB   82.11 MB     -1.4 %
    depth             28          28           exact
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from threshnet.config import StageConfig, ThreshNetConfig


def _stage(depth: int, growth: int, transition: int, downsample: bool) -> StageConfig:
    return StageConfig(depth=depth, growth=growth, transition=transition, downsample=downsample)


THRESHNET79 = ThreshNetConfig(
    stages=(
        _stage(6, 32, 128, True),
        _stage(8, 32, 192, True),
        _stage(12, 32, 288, False),
        _stage(16, 40, 480, True),
        _stage(4, 160, 960, False),
    ),
    threshold=3,
)

THRESHNET95 = ThreshNetConfig(
    stages=(
        _stage(6, 32, 128, True),
        _stage(12, 32, 256, True),
        _stage(16, 32, 384, False),
        _stage(16, 40, 480, True),
        _stage(4, 160, 960, False),
    ),
    threshold=3,
)

THRESHNET28 = ThreshNetConfig(
    stages=(
        _stage(5, 32, 320, True),
        _stage(1, 32, 640, True),
        _stage(1, 32, 640, False),
        _stage(3, 40, 640, True),
        _stage(4, 160, 640, False),
    ),
    threshold=3,
)

HARDNET68 = ThreshNetConfig(
    stages=(
        _stage(8, 14, 128, True),
        _stage(16, 16, 256, False),
        _stage(16, 20, 320, True),
        _stage(16, 40, 640, True),
        _stage(4, 160, 1024, False),
    ),
    threshold=0,
)

# HarDNet85 (PingoLH/Pytorch-HarDNet, hardnet.py): a wider stem and six harmonic stages.
# Its dropouts (0.1 before the last transition, 0.2 before the classifier) are not part
# of the builder; parameters and torchstat FLOPs match (35,402,022 with a 10-class head).
HARDNET85 = ThreshNetConfig(
    stages=(
        _stage(8, 24, 192, True),
        _stage(16, 24, 256, False),
        _stage(16, 28, 320, True),
        _stage(16, 36, 480, False),
        _stage(16, 48, 720, True),
        _stage(4, 256, 1280, False),
    ),
    threshold=0,
    stem=(48, 96),
)

PRESETS: dict[str, ThreshNetConfig] = {
    "threshnet28": THRESHNET28,
    "threshnet79": THRESHNET79,
    "threshnet95": THRESHNET95,
    "hardnet68": HARDNET68,
    "hardnet85": HARDNET85,
}

PUBLISHED_PRESETS = ("threshnet28", "threshnet79", "threshnet95")


@dataclass(frozen=True)
class PublishedFigures:
    """A row of the authors' README (CIFAR-10; costs are torchstat at 3x224x224)."""

    params_m: float
    torchstat_gflops: float
    torchstat_gmadd: float
    torchstat_memory_mb: float
    cifar10_error_pct: float
    rtx3050_ms_per_image: float


PUBLISHED: dict[str, PublishedFigures] = {
    "threshnet28": PublishedFigures(10.18, 2.28, 4.55, 83.26, 14.75, 0.35),
    "threshnet79": PublishedFigures(14.31, 3.46, 6.90, 109.68, 13.66, 0.42),
    "threshnet95": PublishedFigures(16.19, 4.07, 8.12, 132.34, 13.31, 0.46),
    # HarDNet68's README params (17.57 M) use a 1000-class head; the 10-class count is
    # 16,550,598 (spec section 5).
    "hardnet68": PublishedFigures(17.57, 4.26, 8.51, 49.28, 14.66, 0.44),
    # 36.67 M with a 1000-class head; 35,402,022 with 10 classes (spec section 5).
    "hardnet85": PublishedFigures(36.67, 9.10, 18.18, 74.65, 13.89, 0.50),
}


def get_preset(name: str) -> ThreshNetConfig:
    """The preset config called ``name``; ValueError lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def preset_name(config: ThreshNetConfig) -> str | None:
    """The name of the preset with ``config``'s architecture (any head size), or None."""
    return next(
        (
            name
            for name, preset in PRESETS.items()
            if preset == dataclasses.replace(config, num_classes=preset.num_classes)
        ),
        None,
    )
