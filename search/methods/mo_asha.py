"""Decision logic of multi-objective asynchronous successive halving (MO-ASHA).

A trial is trained in stages and reports at epoch *rungs* (e.g. 1, 2 and 4 epochs). At each
rung but the last, the report is recorded with the rung's other reports and the trial goes on
training only if it ranks in the top ``1 / reduction_factor`` of the results recorded at that
rung so far, itself included; otherwise it is stopped there. This is the asynchronous
"stop or continue at report time" rule of Ray Tune's ``AsyncHyperBandScheduler`` and of
Syne Tune's ``MOASHA`` (Schmucker et al. 2021), with a multi-objective ranking.

Ranking. Each result is the pair (accuracy at the rung, maximised; latency in ms,
minimised). Results are put into non-dominated layers (layer 0 is the rung's Pareto front,
layer 1 the front of the rest, ...), and inside a layer ordered by NSGA-II's crowding
distance, largest first. Crowding distance is chosen because it needs no reference point
(a hypervolume contribution would, and a rung's values have none that fits every rung), is
scale-free (each objective is normalised by its range within the layer, so accuracy and
milliseconds need no weights), and gives the layer's two ends an infinite distance: the
fastest and the most accurate result of a front always rank first, which keeps the
searched trade-offs spread out instead of favouring accuracy. A result with a NaN
objective ranks after every other (they all tie among themselves).

Decision. Let ``n`` be the number of results at the rung including the new one and ``k`` the
number of them ranked strictly ahead of it (ties share the best place). The trial
continues iff ``k < n / reduction_factor``: the first result at a rung always continues,
and so does any result tied with the best (e.g. the fastest point of the front).
A trial that reports the same rung again gets its first decision back and is not recorded
twice; epochs that are not rungs, and the last rung (the full budget), always continue and
are not recorded. This module is pure logic (no Ray); a Ray Tune scheduler wraps it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RungSchedule:
    """Epoch rungs (strictly increasing positive ints; the last is the full budget) and
    the reduction factor (eta > 1): the top 1/eta at each rung but the last continue."""

    rungs: tuple[int, ...]
    reduction_factor: float = 3.0

    def __post_init__(self) -> None:
        rungs = self.rungs
        if not rungs:
            raise ValueError("rungs is empty: give at least the full budget")
        if not all(isinstance(r, int) and not isinstance(r, bool) for r in rungs):
            raise ValueError(f"rungs must be ints, got {rungs!r}")
        if rungs[0] < 1:
            raise ValueError(f"rungs must be positive, got {rungs!r}")
        if any(b <= a for a, b in itertools.pairwise(rungs)):
            raise ValueError(f"rungs must be strictly increasing, got {rungs!r}")
        if not self.reduction_factor > 1:  # also rejects NaN
            raise ValueError(f"reduction_factor must be > 1, got {self.reduction_factor!r}")

    @classmethod
    def for_epochs(cls, epochs: int, reduction_factor: float = 3.0) -> RungSchedule:
        """Rungs by integer halving from the full budget down to 1 epoch:
        4 -> (1, 2, 4), 10 -> (1, 2, 5, 10), 7 -> (1, 3, 7), 1 -> (1,)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {epochs!r}")
        rungs = []
        while epochs >= 1:
            rungs.append(epochs)
            epochs //= 2
        return cls(tuple(reversed(rungs)), reduction_factor)

    @property
    def full_budget(self) -> int:
        """The last rung: a trial reaching it has trained the full budget."""
        return self.rungs[-1]


class MultiObjectiveRungs:
    """The results recorded at each rung but the last, and the stop/continue rule."""

    def __init__(self, schedule: RungSchedule) -> None:
        self.schedule = schedule
        # rung -> trial id -> (loss of accuracy, latency) and the decision it got
        self._results: dict[int, dict[str, tuple[float, float]]] = {
            rung: {} for rung in schedule.rungs[:-1]
        }
        self._decisions: dict[int, dict[str, bool]] = {rung: {} for rung in schedule.rungs[:-1]}

    @property
    def counts(self) -> dict[int, int]:
        """How many results each rung but the last holds (a fresh dict)."""
        return {rung: len(results) for rung, results in self._results.items()}

    def on_result(self, trial_id: str, epochs: int, accuracy: float, latency_ms: float) -> bool:
        """Record a report at a rung; True to continue training, False to stop now."""
        results = self._results.get(epochs)
        if results is None:  # not a rung, or the last one
            return True
        decisions = self._decisions[epochs]
        if trial_id in decisions:
            return decisions[trial_id]
        results[trial_id] = (-float(accuracy), float(latency_ms))
        keep = self.continues(np.array(list(results.values()), dtype=float))
        decisions[trial_id] = keep
        return keep

    def continues(self, losses: np.ndarray) -> bool:
        """Whether the last row of a rung's results (rows of minimised losses, the new one
        last) ranks in the top 1/eta of them: fewer than n/eta rows ahead of it."""
        ahead = _ranked_ahead(losses, len(losses) - 1)
        return ahead * self.schedule.reduction_factor < len(losses)


def _ranked_ahead(losses: np.ndarray, index: int) -> int:
    """How many rows of ``losses`` (minimised columns) rank strictly ahead of row ``index``
    by (non-dominated layer, larger crowding distance); rows with a NaN rank last."""
    finite = ~np.isnan(losses).any(axis=1)
    if not finite[index]:
        return int(finite.sum())
    layers = np.full(len(losses), math.inf)
    layers[finite] = nondominated_layers(losses[finite])
    layer = layers[index]
    members = np.flatnonzero(layers == layer)
    crowding = _crowding(losses[members])
    own = crowding[np.searchsorted(members, index)]
    return int((layers < layer).sum() + (crowding > own).sum())


def nondominated_layers(losses: np.ndarray) -> np.ndarray:
    """Non-dominated layer of each row (0 = not dominated by any row)."""
    no_worse = (losses[:, None, :] <= losses[None, :, :]).all(axis=2)
    better = (losses[:, None, :] < losses[None, :, :]).any(axis=2)
    dominates = no_worse & better  # [i, j]: row i dominates row j
    layers = np.full(len(losses), -1)
    left = np.ones(len(losses), dtype=bool)
    layer = 0
    while left.any():
        front = left & ~(dominates[left].any(axis=0))
        layers[front] = layer
        left &= ~front
        layer += 1
    return layers


def _crowding(losses: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of one layer (ends of every objective: inf)."""
    count, objectives = losses.shape
    distance = np.zeros(count)
    if count <= 2:
        return np.full(count, math.inf)
    for column in range(objectives):
        order = np.argsort(losses[:, column], kind="stable")
        values = losses[order, column]
        distance[order[0]] = distance[order[-1]] = math.inf
        span = values[-1] - values[0]
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance
