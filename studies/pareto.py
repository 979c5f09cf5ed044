"""Pareto front and hypervolume over (validation accuracy max, latency min).

Both use Optuna's own multi-objective helpers (the same code Optuna's samplers and
``plot_hypervolume_history`` use): objectives are turned into losses (-accuracy,
latency) first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

# Optuna has no public API for these (its samplers and plots use them); optuna is pinned
# below 6 in pyproject.toml, and tests/test_pareto.py checks both on hand-made points.
from optuna._hypervolume import compute_hypervolume
from optuna.study._multi_objective import _is_pareto_front

from threshnet.presets import PUBLISHED_PRESETS


@dataclass(frozen=True)
class Reference:
    """Hypervolume reference point: the worst accuracy and latency that still count."""

    val_acc: float
    latency_ms: float
    rule: str

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def _losses(frame: pd.DataFrame) -> np.ndarray:
    return np.column_stack(
        [-frame["val_acc"].to_numpy(dtype=float), frame["latency_ms"].to_numpy(dtype=float)]
    )


def pareto_mask(frame: pd.DataFrame) -> np.ndarray:
    """True for rows no other row dominates (duplicates of a front point all count)."""
    if frame.empty:
        return np.zeros(0, dtype=bool)
    return _is_pareto_front(_losses(frame), assume_unique_lexsorted=False)


def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """The non-dominated rows, fastest first."""
    if frame.empty:
        return frame
    return frame[pareto_mask(frame)].sort_values(["latency_ms", "val_acc"], ascending=[True, False])


def default_reference(frame: pd.DataFrame) -> Reference:
    """The published presets' nadir in this study: their lowest accuracy and highest
    latency. The hypervolume then measures the region of trade-offs that dominate the
    published models (a preset on that corner adds nothing); without a measured preset,
    the nadir of all the study's trials."""
    presets = frame[frame["preset"].isin(PUBLISHED_PRESETS)]
    if not presets.empty:
        rule = "the published presets' nadir in this study (lowest accuracy, highest latency)"
        source = presets
    elif not frame.empty:
        rule = "the nadir of this study's trials (no published preset measured)"
        source = frame
    else:
        return Reference(val_acc=0.0, latency_ms=1.0, rule="no trials yet")
    return Reference(
        val_acc=float(source["val_acc"].min()),
        latency_ms=float(source["latency_ms"].max()),
        rule=rule,
    )


def hypervolume(frame: pd.DataFrame, reference: Reference) -> float:
    """Area dominated by ``frame``'s points and bounded by ``reference`` (acc x ms)."""
    losses = _losses(frame)
    point = np.array([-reference.val_acc, reference.latency_ms])
    inside = losses[np.all(losses <= point, axis=1)]
    return float(compute_hypervolume(inside, point)) if len(inside) else 0.0


def hypervolume_history(frame: pd.DataFrame, reference: Reference) -> pd.DataFrame:
    """Hypervolume of the trials numbered <= n, for every trial number n in ``frame``."""
    ordered = frame.sort_values("number")
    values = [hypervolume(ordered.iloc[: index + 1], reference) for index in range(len(ordered))]
    return pd.DataFrame({"number": ordered["number"].to_numpy(), "hypervolume": values})


def dominators(front: pd.DataFrame, row: pd.Series) -> list[int]:
    """Numbers of the front trials that dominate ``row`` (as good in both, better in one)."""
    better_or_equal = (front["val_acc"] >= row["val_acc"]) & (
        front["latency_ms"] <= row["latency_ms"]
    )
    strictly = (front["val_acc"] > row["val_acc"]) | (front["latency_ms"] < row["latency_ms"])
    return [int(n) for n in front.loc[better_or_equal & strictly, "number"]]
