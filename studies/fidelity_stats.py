"""How well a cheap ranking of configs agrees with the long budget's: rank correlations
with paired-bootstrap intervals, top-k overlap and front recall."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from studies.pareto import pareto_mask

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Correlation:
    """A rank correlation and its paired-bootstrap interval (NaN when undefined)."""

    value: float
    low: float
    high: float

    def text(self) -> str:
        if np.isnan(self.value):
            return "n/a"
        interval = "" if np.isnan(self.low) else f" [{self.low:.2f}, {self.high:.2f}]"
        return f"{self.value:.2f}{interval}"

    def to_dict(self) -> dict[str, float | None]:
        return {k: None if np.isnan(v) else v for k, v in vars(self).items()}


def kendall(x: np.ndarray, y: np.ndarray) -> float | np.ndarray:
    """Kendall's tau-b (ties counted as scipy counts them) over the last axis: a float for
    one ranking, an array for a stack of them (a bootstrap's resamples at once, where a
    call of scipy's per resample costs a millisecond each)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    first, second = np.triu_indices(x.shape[-1], k=1)
    dx = np.sign(x[..., first] - x[..., second])
    dy = np.sign(y[..., first] - y[..., second])
    untied_x, untied_y = np.count_nonzero(dx, axis=-1), np.count_nonzero(dy, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (dx * dy).sum(axis=-1) / np.sqrt(untied_x) / np.sqrt(untied_y)
    return _scalar_or_rows(np.clip(tau, -1.0, 1.0))


def spearman(x: np.ndarray, y: np.ndarray) -> float | np.ndarray:
    """Spearman's rho (average ranks for ties) over the last axis, as ``kendall``."""
    ranks_x = stats.rankdata(x, axis=-1)
    ranks_y = stats.rankdata(y, axis=-1)
    ranks_x -= ranks_x.mean(axis=-1, keepdims=True)
    ranks_y -= ranks_y.mean(axis=-1, keepdims=True)
    spread = np.sqrt((ranks_x**2).sum(axis=-1) * (ranks_y**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ranks_x * ranks_y).sum(axis=-1) / spread
    return _scalar_or_rows(np.clip(rho, -1.0, 1.0))


def _scalar_or_rows(values: np.ndarray) -> float | np.ndarray:
    return float(values) if values.ndim == 0 else values


def correlation(
    x: np.ndarray,
    y: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float | np.ndarray],
    seed: int,
) -> Correlation:
    """``statistic`` of the pairs and its percentile interval over paired resamples
    (``statistic`` works over the last axis, as ``kendall`` and ``spearman`` do).

    Written out rather than ``scipy.stats.bootstrap``: with a dozen configs some resamples
    repeat one pair only, where a rank correlation is undefined; scipy then returns no
    interval at all, while these resamples are left out here.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), float("nan"))
    value = float(statistic(x, y))
    picks = np.random.default_rng(seed).integers(0, len(x), size=(BOOTSTRAP_RESAMPLES, len(x)))
    picks = picks[(np.ptp(x[picks], axis=1) > 0) & (np.ptp(y[picks], axis=1) > 0)]
    resampled = np.asarray(statistic(x[picks], y[picks]), dtype=float)
    resampled = resampled[np.isfinite(resampled)]
    if len(resampled) < BOOTSTRAP_RESAMPLES // 2:
        return Correlation(value, float("nan"), float("nan"))
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Correlation(value, float(low), float(high))


def top_k_overlap(score: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of the ``k`` highest by ``truth`` that are also among the ``k`` highest by
    ``score`` (ties broken by position, as a stable sort does)."""
    if k < 1 or len(score) == 0:
        return float("nan")
    k = min(k, len(score))
    by_score = set(np.argsort(-np.asarray(score, dtype=float), kind="stable")[:k])
    by_truth = set(np.argsort(-np.asarray(truth, dtype=float), kind="stable")[:k])
    return len(by_score & by_truth) / k


def front(accuracy: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Mask of the accuracy (max) / latency (min) Pareto front."""
    frame = pd.DataFrame({"val_acc": accuracy, "latency_ms": latency})
    return pareto_mask(frame)


def front_recall(score: np.ndarray, truth: np.ndarray, latency: np.ndarray) -> float:
    """Share of the front by (``truth``, latency) that the front by (``score``, latency)
    contains: how much of the long budget's front a search ranked by ``score`` would find."""
    if len(score) == 0:
        return float("nan")
    true_front = front(np.asarray(truth, dtype=float), np.asarray(latency, dtype=float))
    found = front(np.asarray(score, dtype=float), np.asarray(latency, dtype=float))
    return float((true_front & found).sum() / true_front.sum())
