"""Pareto front, hypervolume and dominance on hand-made points."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from studies.pareto import (
    Reference,
    RunningFront,
    default_reference,
    dominators,
    hypervolume,
    hypervolume_history,
    pareto_front,
    pareto_mask,
)


def _points(rows: list[tuple[int, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "number": [r[0] for r in rows],
            "val_acc": [r[1] for r in rows],
            "latency_ms": [r[2] for r in rows],
            "preset": [""] * len(rows),
        }
    )


POINTS = _points(
    [
        (0, 0.80, 10.0),  # front
        (1, 0.70, 5.0),  # front
        (2, 0.75, 12.0),  # dominated by 0
        (3, 0.80, 10.0),  # duplicate of 0: on the front too
        (4, 0.80, 11.0),  # tie in accuracy, slower: dominated by 0
        (5, 0.90, 20.0),  # front
        (6, 0.60, 5.0),  # tie in latency, worse: dominated by 1
    ]
)


def test_front_handles_ties_and_duplicates() -> None:
    assert pareto_mask(POINTS).tolist() == [True, True, False, True, False, True, False]
    assert pareto_front(POINTS)["number"].tolist() == [1, 0, 3, 5]


def test_hypervolume_is_the_dominated_area() -> None:
    reference = Reference(val_acc=0.5, latency_ms=30.0, rule="test")
    # staircase: (5ms,0.70) (10ms,0.80) (20ms,0.90) up to (30ms, 0.5)
    expected = (10 - 5) * (0.70 - 0.5) + (20 - 10) * (0.80 - 0.5) + (30 - 20) * (0.90 - 0.5)
    assert hypervolume(POINTS, reference) == pytest.approx(expected)


def test_points_outside_the_reference_do_not_count() -> None:
    reference = Reference(val_acc=0.85, latency_ms=15.0, rule="test")
    assert hypervolume(POINTS, reference) == 0.0
    reference = Reference(val_acc=0.75, latency_ms=15.0, rule="test")
    assert hypervolume(POINTS, reference) == pytest.approx((15 - 10) * (0.80 - 0.75))


def test_history_never_decreases_and_ends_at_the_total() -> None:
    reference = Reference(val_acc=0.5, latency_ms=30.0, rule="test")
    history = hypervolume_history(POINTS.sample(frac=1.0, random_state=0), reference)
    assert history["number"].tolist() == list(range(7))
    values = history["hypervolume"].tolist()
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(hypervolume(POINTS, reference))
    assert values[0] == pytest.approx((30 - 10) * (0.80 - 0.5))


def _random_trials(count: int, seed: int, *, grid: bool) -> pd.DataFrame:
    """``count`` trials in random number order: on a coarse grid (many ties) or continuous,
    a tenth of them repeats of earlier ones, some outside the reference box or on its edge."""
    rng = np.random.default_rng(seed)
    unique = count - count // 10
    if grid:
        accuracy = rng.integers(30, 96, unique) / 100  # ties in accuracy
        latency = rng.integers(1, 41, unique) / 2  # ties in latency, 0.5 .. 20 ms
    else:
        latency = rng.uniform(0.5, 20.0, unique)
        accuracy = 0.5 + 0.4 * (1 - np.exp(-latency / 5)) + rng.normal(0, 0.02, unique)
    repeats = rng.integers(0, unique, count - unique)  # exact duplicates
    accuracy = np.concatenate([accuracy, accuracy[repeats]])
    latency = np.concatenate([latency, latency[repeats]])
    edge = rng.random(count) < 0.03  # exactly on the reference's accuracy or latency
    accuracy[edge & (rng.random(count) < 0.5)] = HISTORY_REFERENCE.val_acc
    latency[edge & (rng.random(count) < 0.5)] = HISTORY_REFERENCE.latency_ms
    numbers = rng.permutation(count)
    rows = zip(numbers.tolist(), accuracy.tolist(), latency.tolist(), strict=True)
    frame = _points(list(rows))
    return frame.sample(frac=1.0, random_state=seed)


HISTORY_REFERENCE = Reference(val_acc=0.55, latency_ms=15.0, rule="test")


@pytest.mark.parametrize(("seed", "grid"), [(0, True), (1, True), (2, False), (3, False)])
def test_history_matches_the_hypervolume_of_every_prefix(seed: int, grid: bool) -> None:
    frame = _random_trials(300, seed, grid=grid)
    outside = (frame["val_acc"] < HISTORY_REFERENCE.val_acc) | (
        frame["latency_ms"] > HISTORY_REFERENCE.latency_ms
    )
    assert 0 < outside.sum() < len(frame)  # some trials do not count, most do
    assert frame.duplicated(["val_acc", "latency_ms"]).any()
    history = hypervolume_history(frame, HISTORY_REFERENCE)
    ordered = frame.sort_values("number")
    assert history["number"].tolist() == ordered["number"].tolist()
    expected = [
        hypervolume(ordered.iloc[: index + 1], HISTORY_REFERENCE) for index in range(len(frame))
    ]
    assert history["hypervolume"].tolist() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert expected[-1] > 0


def test_history_of_2000_trials_ends_at_the_total() -> None:
    frame = _random_trials(2000, 4, grid=False)
    history = hypervolume_history(frame, HISTORY_REFERENCE)
    assert len(history) == 2000
    assert history["hypervolume"].iloc[-1] == pytest.approx(
        hypervolume(frame, HISTORY_REFERENCE), rel=1e-9
    )
    ordered = frame.sort_values("number")
    for index in (0, 9, 99, 999):
        assert history["hypervolume"].iloc[index] == pytest.approx(
            hypervolume(ordered.iloc[: index + 1], HISTORY_REFERENCE), rel=1e-9, abs=1e-12
        )


def test_history_of_no_trials_and_of_trials_outside_the_reference() -> None:
    assert hypervolume_history(POINTS.iloc[:0], HISTORY_REFERENCE).empty
    outside = Reference(val_acc=0.95, latency_ms=1.0, rule="test")
    assert hypervolume_history(POINTS, outside)["hypervolume"].tolist() == [0.0] * len(POINTS)


def test_dominators_of_a_point() -> None:
    front = pareto_front(POINTS)
    assert dominators(front, POINTS.iloc[2]) == [0, 3]
    assert dominators(front, POINTS.iloc[6]) == [1]
    assert dominators(front, POINTS.iloc[5]) == []


def test_the_default_reference_is_the_presets_nadir() -> None:
    frame = _points([(0, 0.60, 2.0), (1, 0.70, 5.0), (2, 0.65, 9.0), (3, 0.90, 1.0)])
    frame["preset"] = ["threshnet28", "threshnet79", "threshnet95", ""]
    reference = default_reference(frame)
    assert (reference.val_acc, reference.latency_ms) == (0.60, 9.0)
    assert "presets' nadir" in reference.rule
    # Only what dominates the presets' corner counts; trial 3 dominates all three.
    assert hypervolume(frame, reference) == pytest.approx((0.90 - 0.60) * (9.0 - 1.0))
    no_presets = default_reference(frame.assign(preset=""))
    assert (no_presets.val_acc, no_presets.latency_ms) == (0.60, 9.0)
    assert "no published preset" in no_presets.rule


def test_the_running_front_matches_the_from_scratch_front_after_each_point() -> None:
    # Coarse values: ties; presets come after 40 points (the reference's rule changes
    # then), one of them far worse (the reference box grows); last, the front once more.
    rng = np.random.default_rng(3)
    rows = [
        (n, round(rng.uniform(0.3, 0.9), 2), round(rng.uniform(1.0, 10.0), 1)) for n in range(120)
    ]
    frame = _points(rows)
    frame.loc[[40, 70, 100], "preset"] = ["threshnet28", "threshnet79", "threshnet95"]
    frame.loc[70, ["val_acc", "latency_ms"]] = [0.2, 30.0]
    first_front = pareto_front(frame)
    frame = pd.concat([frame, first_front], ignore_index=True)
    running = RunningFront()
    assert (running.size, running.hypervolume()) == (0, 0.0)
    assert running.reference() == default_reference(frame.iloc[:0])
    for index, row in enumerate(frame.itertuples()):
        running.add(row.val_acc, row.latency_ms, row.preset)
        seen = frame.iloc[: index + 1]
        reference = default_reference(seen)
        assert running.size == pareto_mask(seen).sum()
        assert running.reference() == reference
        assert running.hypervolume() == pytest.approx(hypervolume(seen, reference), rel=1e-12)
    assert running.size == 2 * len(first_front)
