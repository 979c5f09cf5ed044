"""Pareto front and hypervolume over (validation accuracy max, latency min).

The front and the hypervolume use Optuna's own multi-objective helpers (the same code
Optuna's samplers and ``plot_hypervolume_history`` use): objectives are turned into
losses (-accuracy, latency) first. The hypervolume history is an exact incremental 2-D
computation (tests/test_pareto.py checks it against the from-scratch hypervolume).
"""

from __future__ import annotations

import bisect
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
    if frame.empty:
        return Reference(val_acc=0.0, latency_ms=1.0, rule="no trials yet")
    presets = frame[frame["preset"].isin(PUBLISHED_PRESETS)]
    if not presets.empty:
        rule = "the published presets' nadir in this study (lowest accuracy, highest latency)"
        source = presets
    else:
        rule = "the nadir of this study's trials (no published preset measured)"
        source = frame
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
    """Hypervolume of the trials numbered <= n, for every trial number n in ``frame``.

    Exact and incremental (2-D): the current front is kept sorted by latency (accuracy
    then strictly rises with it), and each new trial adds the area it newly dominates
    inside ``reference`` and drops the front points it dominates. Bisection finds its
    place, so the whole history is O(N log N) apart from list shifts, instead of one
    from-scratch :func:`hypervolume` per prefix. Trials outside the reference box,
    duplicates and dominated trials add nothing.
    """
    ordered = frame.sort_values("number")
    losses = _losses(ordered)
    bound_x, bound_y = reference.latency_ms, -reference.val_acc  # both minimised
    xs: list[float] = []  # front latencies, strictly increasing
    ys: list[float] = []  # front -accuracies, strictly decreasing
    total = 0.0
    values = []
    for y, x in losses.tolist():
        if x <= bound_x and y <= bound_y:  # inside the box (NaN is not)
            total += _add_to_front(xs, ys, x, y, bound_x, bound_y)
        values.append(total)
    return pd.DataFrame({"number": ordered["number"].to_numpy(), "hypervolume": values})


def _add_to_front(
    xs: list[float], ys: list[float], x: float, y: float, bound_x: float, bound_y: float
) -> float:
    """Insert (x, y) into the 2-D minimisation front (xs, ys); return the area it adds."""
    after = bisect.bisect_right(xs, x)
    if after and ys[after - 1] <= y:  # a front point at most as slow is at least as good
        return 0.0
    first = bisect.bisect_left(xs, x)  # the front points (x', y') with x' >= x ...
    last = first
    while last < len(ys) and ys[last] >= y:  # ... and y' >= y, which (x, y) dominates
        last += 1
    # Walk right from x: each strip's newly covered height runs from y up to the front
    # (or the reference) above it; past the first kept point to the right nothing is new.
    area = 0.0
    left, top = x, ys[first - 1] if first else bound_y
    for index in range(first, last):
        area += (xs[index] - left) * (top - y)
        left, top = xs[index], ys[index]
    area += ((xs[last] if last < len(xs) else bound_x) - left) * (top - y)
    xs[first:last] = [x]
    ys[first:last] = [y]
    return area


def dominators(front: pd.DataFrame, row: pd.Series) -> list[int]:
    """Numbers of the front trials that dominate ``row`` (as good in both, better in one)."""
    better_or_equal = (front["val_acc"] >= row["val_acc"]) & (
        front["latency_ms"] <= row["latency_ms"]
    )
    strictly = (front["val_acc"] > row["val_acc"]) | (front["latency_ms"] < row["latency_ms"])
    return [int(n) for n in front.loc[better_or_equal & strictly, "number"]]
