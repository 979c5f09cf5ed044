"""MO-ASHA's stop/continue rule (search.methods.mo_asha) on hand-made and random results."""

from __future__ import annotations

import math
import random

import pytest

from search.methods.mo_asha import MultiObjectiveRungs, RungSchedule


def _rungs(eta: float = 3.0) -> MultiObjectiveRungs:
    return MultiObjectiveRungs(RungSchedule((1, 2, 4), eta))


def test_first_result_at_each_rung_continues() -> None:
    rungs = _rungs()
    assert rungs.on_result("a", 1, 0.10, 100.0)  # poor and slow: nothing to compare with
    assert rungs.on_result("a", 2, 0.10, 100.0)
    assert rungs.counts == {1: 1, 2: 1}


def test_dominated_result_stops_once_rung_holds_eta_results() -> None:
    rungs = _rungs()
    assert rungs.on_result("a", 1, 0.80, 2.0)
    rungs.on_result("b", 1, 0.70, 1.0)
    assert not rungs.on_result("c", 1, 0.60, 3.0)  # dominated by a and b
    assert rungs.counts[1] == 3
    for index in range(10):  # and stays stopped however many results the rung holds
        assert not rungs.on_result(f"d{index}", 1, 0.50, 4.0 + index)


def test_better_result_continues_where_worse_one_stops() -> None:
    rungs = _rungs()
    for index in range(6):
        rungs.on_result(f"r{index}", 1, 0.50 + 0.01 * index, 5.0 - 0.1 * index)
    assert not rungs.on_result("worse", 1, 0.40, 6.0)
    assert rungs.on_result("better", 1, 0.60, 4.0)  # dominates every result


def test_fast_but_less_accurate_result_on_the_front_continues() -> None:
    rungs = _rungs()
    for index in range(8):  # accurate and slow, on a line: a front of 8
        rungs.on_result(f"slow{index}", 1, 0.80 + 0.01 * index, 10.0 + index)
    assert not rungs.on_result("mid", 1, 0.805, 10.5)  # on the front, but crowded out
    assert rungs.on_result("fast", 1, 0.40, 1.0)  # least accurate, but fastest: continues
    assert not rungs.on_result("slow-and-poor", 1, 0.40, 30.0)  # accuracy alone would rank


def test_most_accurate_result_continues_even_if_slowest() -> None:
    rungs = _rungs()
    for index in range(8):
        rungs.on_result(f"t{index}", 1, 0.50 + 0.01 * index, 1.0 + index)
    assert rungs.on_result("accurate", 1, 0.95, 100.0)


@pytest.mark.parametrize("eta", [2.0, 3.0, 4.0])
def test_about_one_in_eta_of_random_results_continue(eta: float) -> None:
    rungs = _rungs(eta)
    rng = random.Random(7)
    kept = [rungs.on_result(str(i), 1, rng.random(), rng.random()) for i in range(200)]
    assert abs(sum(kept) / len(kept) - 1 / eta) < 0.06


def test_last_rung_and_other_epochs_always_continue_and_record_nothing() -> None:
    rungs = _rungs()
    for index in range(5):
        rungs.on_result(f"good{index}", 1, 0.9, 1.0)
    assert not rungs.on_result("bad", 1, 0.1, 9.0)
    for epochs in (0, 3, 4, 5):
        assert rungs.on_result("bad", epochs, 0.1, 9.0)
    assert rungs.counts == {1: 6, 2: 0}


def test_same_rung_twice_is_recorded_once_with_the_same_decision() -> None:
    rungs = _rungs()
    for index in range(5):
        rungs.on_result(f"good{index}", 1, 0.9, 1.0)
    assert not rungs.on_result("bad", 1, 0.1, 9.0)
    assert not rungs.on_result("bad", 1, 0.99, 0.5)  # a later, better report changes nothing
    assert rungs.counts[1] == 6


def test_nan_accuracy_ranks_worst() -> None:
    rungs = _rungs()
    rungs.on_result("a", 1, 0.5, 10.0)
    rungs.on_result("b", 1, 0.1, 50.0)
    assert not rungs.on_result("nan", 1, math.nan, 0.1)  # fastest, but NaN accuracy
    # c is dominated by a only: 1 ahead of 4 continues, 2 (were NaN ahead) would not
    assert rungs.on_result("c", 1, 0.45, 12.0)


def test_counts_is_read_only() -> None:
    rungs = _rungs()
    rungs.on_result("a", 1, 0.5, 1.0)
    rungs.counts[1] = 99
    assert rungs.counts == {1: 1, 2: 0}


@pytest.mark.parametrize(
    ("epochs", "rungs"),
    [(1, (1,)), (2, (1, 2)), (4, (1, 2, 4)), (7, (1, 3, 7)), (10, (1, 2, 5, 10))],
)
def test_for_epochs_halves_down_to_one(epochs: int, rungs: tuple[int, ...]) -> None:
    schedule = RungSchedule.for_epochs(epochs)
    assert schedule.rungs == rungs
    assert schedule.full_budget == epochs
    assert schedule.reduction_factor == 3.0


def test_single_rung_schedule_never_stops() -> None:
    rungs = MultiObjectiveRungs(RungSchedule.for_epochs(1))
    assert all(rungs.on_result(str(i), 1, 0.1 * (i % 3), 10.0 - i) for i in range(10))
    assert rungs.counts == {}


@pytest.mark.parametrize(
    ("rungs", "eta", "message"),
    [
        ((), 3.0, "empty"),
        ((0, 2, 4), 3.0, "positive"),
        ((1, 4, 2), 3.0, "strictly increasing"),
        ((1, 2, 2), 3.0, "strictly increasing"),
        ((1, 2.5, 4), 3.0, "ints"),
        ((1, 2, 4), 1.0, "reduction_factor"),
        ((1, 2, 4), math.nan, "reduction_factor"),
    ],
)
def test_schedule_rejects_bad_values(rungs: tuple[int, ...], eta: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RungSchedule(rungs, eta)


@pytest.mark.parametrize("epochs", [0, -4, 2.0, True])
def test_for_epochs_rejects_bad_budget(epochs: int) -> None:
    with pytest.raises(ValueError, match="epochs"):
        RungSchedule.for_epochs(epochs)
