"""What every trial needs besides its parameters, sent to the workers with the trainable."""

from __future__ import annotations

from dataclasses import dataclass

from search.setup.settings import StudySettings
from threshnet.training.data import CacheEntry


@dataclass(frozen=True)
class TrialContext:
    """The study's settings and data cache, the trial's CPUs, and the study's latency
    scale: its reference time (ms) per device kind (threshnet.latency_scale; None for a
    study made before there was one, whose latencies stay raw milliseconds)."""

    settings: StudySettings
    cache_dir: str | None
    train_cache: CacheEntry | None
    cpus_per_trial: float
    latency_scale: dict[str, float] | None = None
