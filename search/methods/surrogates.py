"""Surrogate objectives of a config from its static costs, and simulated trials' settings.

A surrogate maps what the closed forms say of a config (threshnet.closed_form: parameters,
MACs, feature-map volume, depth; no network built, no torch) to an (accuracy, latency ms)
pair shaped like a real study's:

- ``launch``: latency of a GPU at batch 1, bound by kernel launches and memory traffic
  (time per layer, per feature-map element, per MAC); accuracy rising with the log of
  the parameters with diminishing returns, best at a hybrid threshold of 3 (the paper's
  finding), less for very deep and narrow nets.
- ``compute``: latency of a compute-bound device (MACs dominate, the square root of the
  feature-map volume for memory); accuracy saturating in MACs, with dense stages helping
  more when their growth is larger and harmonic ones when k x m is, and the threshold's
  effect rising to 4 dense stages.

``bench/sampler_efficiency.py`` scores samplers on them; ``python -m search.run
--simulate`` runs a whole study on them (search.worker.simulated) to size a driver or a
cluster before spending GPU time.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from threshnet.closed_form import architecture_costs
from threshnet.config import ThreshNetConfig
from threshnet.harmonic import harmonic_layout

ACCURACY_NOISE = 0.004  # sd of the observed accuracy
LATENCY_NOISE = 0.03  # sd of the observed latency's log (3 %)


@dataclass(frozen=True)
class Features:
    """What the surrogates see of a config."""

    params_m: float  # millions
    macs_g: float  # at the input size, billions
    volume_m: float  # feature-map elements written, millions
    depth: int
    threshold: int
    dense_growth: float  # mean growth of the dense stages (0 if none)
    harmonic_width: float  # mean k x m of the harmonic stages (0 if none)


def features(config: ThreshNetConfig, input_size: int = 32) -> Features:
    """The surrogates' view of ``config`` at ``input_size`` (closed forms: microseconds)."""
    costs = architecture_costs(config, input_size)
    volume = 0
    channels = config.stem[1]
    sizes = config.feature_sizes(input_size)
    for index, (stage, size) in enumerate(zip(config.stages, sizes, strict=True)):
        area = size * size
        if config.is_dense(index):
            volume += stage.depth * (config.bottleneck + stage.growth) * area
            block_out = channels + stage.depth * stage.growth
        else:
            layout = harmonic_layout(channels, stage.depth, stage.growth, stage.multiplier)
            volume += sum(layout.widths[1:]) * area
            block_out = layout.out_channels
        volume += (block_out + stage.transition) * area
        channels = stage.transition
    dense = [s.growth for i, s in enumerate(config.stages) if config.is_dense(i)]
    harmonic = [
        s.growth * s.multiplier for i, s in enumerate(config.stages) if not config.is_dense(i)
    ]
    return Features(
        params_m=costs.params / 1e6,
        macs_g=costs.macs / 1e9,
        volume_m=volume / 1e6,
        depth=config.depth,
        threshold=config.threshold,
        dense_growth=statistics.fmean(dense) if dense else 0.0,
        harmonic_width=statistics.fmean(harmonic) if harmonic else 0.0,
    )


def launch_surrogate(f: Features) -> tuple[float, float]:
    """(accuracy, latency ms): launch- and memory-bound latency, log-params accuracy."""
    capacity = 1.0 - math.exp(-math.log1p(f.params_m) / 1.6)
    hybrid = 0.03 * math.exp(-((f.threshold - 3) ** 2) / 2.0)
    too_deep = 0.02 * max(0.0, f.depth - 120) / 40
    accuracy = 0.62 + 0.28 * capacity + hybrid - too_deep
    latency = 0.045 * f.depth + 0.9 * f.volume_m + 0.6 * f.macs_g + 0.3
    return accuracy, latency


def compute_surrogate(f: Features) -> tuple[float, float]:
    """(accuracy, latency ms): compute-bound latency, MACs-saturating accuracy."""
    capacity = f.macs_g / (f.macs_g + 0.12)
    dense_gain = 0.0006 * f.dense_growth * f.threshold / 5
    harmonic_gain = 0.0002 * f.harmonic_width * (5 - f.threshold) / 5
    threshold_effect = 0.012 * min(f.threshold, 4)
    accuracy = 0.58 + 0.30 * capacity + dense_gain + harmonic_gain + threshold_effect
    latency = 9.0 * f.macs_g + 0.35 * math.sqrt(f.volume_m) + 0.01 * f.depth + 0.2
    return accuracy, latency


SURROGATES: dict[str, Callable[[Features], tuple[float, float]]] = {
    "launch": launch_surrogate,
    "compute": compute_surrogate,
}
DEFAULT_SURROGATE = "launch"


def observed(truth: tuple[float, float], rng: random.Random) -> tuple[float, float]:
    """``truth`` as a measurement sees it: accuracy noise sd 0.004, latency noise 3 %."""
    accuracy, latency = truth
    return (
        accuracy + rng.gauss(0, ACCURACY_NOISE),
        latency * math.exp(rng.gauss(0, LATENCY_NOISE)),
    )


@dataclass(frozen=True)
class Simulation:
    """A simulated study: trials sleep for a drawn time and return a surrogate's
    objectives (``python -m search.run --simulate``; stored in the manifest's settings)."""

    surrogate: str = DEFAULT_SURROGATE
    seconds: float = 2.0  # mean duration of a trial
    spread: float = 1.0  # durations are uniform in [seconds - spread, seconds + spread]

    def validate(self) -> None:
        """ValueError (one line) for a surrogate or durations that cannot be simulated."""
        if self.surrogate not in SURROGATES:
            raise ValueError(
                f"unknown surrogate {self.surrogate!r}; choose from {', '.join(SURROGATES)}"
            )
        if not (self.seconds >= 0 and 0 <= self.spread <= self.seconds):
            raise ValueError(
                f"simulated trial durations need 0 <= spread <= mean, got mean "
                f"{self.seconds:g} s, spread {self.spread:g} s"
            )

    def duration(self, rng: random.Random) -> float:
        """One trial's drawn duration in seconds."""
        return rng.uniform(self.seconds - self.spread, self.seconds + self.spread)
