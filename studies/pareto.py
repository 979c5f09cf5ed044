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


_NO_TRIALS = Reference(val_acc=0.0, latency_ms=1.0, rule="no trials yet")
_PRESETS_NADIR = "the published presets' nadir in this study (lowest accuracy, highest latency)"
_TRIALS_NADIR = "the nadir of this study's trials (no published preset measured)"


def default_reference(frame: pd.DataFrame) -> Reference:
    """The published presets' nadir in this study: their lowest accuracy and highest
    latency. The hypervolume then measures the region of trade-offs that dominate the
    published models (a preset on that corner adds nothing); without a measured preset,
    the nadir of all the study's trials."""
    if frame.empty:
        return _NO_TRIALS
    presets = frame[frame["preset"].isin(PUBLISHED_PRESETS)]
    source = frame if presets.empty else presets
    return Reference(
        val_acc=float(source["val_acc"].min()),
        latency_ms=float(source["latency_ms"].max()),
        rule=_TRIALS_NADIR if presets.empty else _PRESETS_NADIR,
    )


def hypervolume(frame: pd.DataFrame, reference: Reference) -> float:
    """Area dominated by ``frame``'s points and bounded by ``reference`` (acc x ms)."""
    return _volume(_losses(frame), reference)


def _volume(losses: np.ndarray, reference: Reference) -> float:
    point = np.array([-reference.val_acc, reference.latency_ms])
    inside = losses[np.all(losses <= point, axis=1)]
    return float(compute_hypervolume(inside, point)) if len(inside) else 0.0


class RunningFront:
    """The front, :func:`default_reference` and :func:`hypervolume` of points added one
    at a time: what the from-scratch functions give for all the points so far, at
    O(front) a point instead of O(points) (the driver's status line, at each ended trial).

    Only the front is kept, each point with how many times it came (duplicates of a front
    point all count, as in :func:`pareto_mask`), and the two nadirs the reference may be:
    the published presets' and all points'. A dominated point inside the reference box
    adds no area, and one outside adds none either, so the front's hypervolume is all
    the points'.
    """

    def __init__(self) -> None:
        self._front: dict[tuple[float, float], int] = {}  # (val_acc, latency_ms): count
        self._nadirs: dict[bool, tuple[float, float]] = {}  # of presets?: (acc, ms)

    def add(self, val_acc: float, latency_ms: float, preset: str = "") -> None:
        """Add one point (a full-budget trial's objectives, and its preset if any)."""
        for of_presets in {False, preset in PUBLISHED_PRESETS}:
            acc, ms = self._nadirs.get(of_presets, (val_acc, latency_ms))
            self._nadirs[of_presets] = (min(acc, val_acc), max(ms, latency_ms))
        point = (val_acc, latency_ms)
        if point in self._front:
            self._front[point] += 1
            return
        if any(acc >= val_acc and ms <= latency_ms for acc, ms in self._front):
            return  # a front point at least as good in both, better in one
        self._front = {
            kept: count
            for kept, count in self._front.items()
            if not (val_acc >= kept[0] and latency_ms <= kept[1])
        }
        self._front[point] = 1

    @property
    def size(self) -> int:
        """Points on the front, duplicates included."""
        return sum(self._front.values())

    def reference(self) -> Reference:
        """:func:`default_reference` of the points so far."""
        if not self._nadirs:
            return _NO_TRIALS
        of_presets = True in self._nadirs
        val_acc, latency_ms = self._nadirs[of_presets]
        rule = _PRESETS_NADIR if of_presets else _TRIALS_NADIR
        return Reference(val_acc=val_acc, latency_ms=latency_ms, rule=rule)

    def hypervolume(self) -> float:
        """:func:`hypervolume` of the points so far, with :meth:`reference`."""
        losses = np.array([(-acc, ms) for acc, ms in self._front], dtype=float)
        return _volume(losses.reshape(-1, 2), self.reference())


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
