"""Replay a steadiness rule on the rounds bench/latency_stability.py recorded.

Each measurement in that bench's JSON line keeps its rounds' ratios (CPU clock) in the
order they were timed (an outlier round timed again in its first timing's place). A rule
here is an estimate of the median ratio's relative standard error and a bound: the
measurement would have stopped at the first round count from 5 on whose estimate is
within the bound (its figure the median of those rounds), or been flagged at its last
round. Rules: "stdev" (sqrt(pi/2) x the rounds' CV / sqrt(n), the product's,
threshnet.steady_latency.ratio_standard_error) and "mad" (the same with the scaled median
absolute deviation in place of the standard deviation, which a tail of slow rounds moves
less). Prints, per rule, bound and arm of busy processes: the largest per-preset CV of
the figures over the measurements, the median rounds, the flagged count.

A replay is exact where the rule stops at or before the rounds recorded; where the
recorded measurement stopped first (its own rule was satisfied) and the replayed rule was
not, the replay takes the recorded rounds and counts the measurement as flagged.

    python bench/se_rules.py bench/results/latency_stability_2026-12-07_data.log
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from threshnet.steady_latency import (
    MEDIAN_SE_FACTOR,
    coefficient_of_variation,
    ratio_standard_error,
    scaled_mad,
)

FIRST_ROUNDS = 5  # the rounds a trial's measurement starts with


def stdev_rule(ratios: list[float]) -> float:
    return ratio_standard_error(coefficient_of_variation(ratios), len(ratios))


def mad_rule(ratios: list[float]) -> float:
    return MEDIAN_SE_FACTOR * scaled_mad(ratios) / statistics.median(ratios) / len(ratios) ** 0.5


RULES: dict[str, Callable[[list[float]], float]] = {"stdev": stdev_rule, "mad": mad_rule}


def replay(
    ratios: list[float], rule: Callable[[list[float]], float], bound: float
) -> tuple[float, int, bool]:
    """The figure, rounds and flag the rule would have given on these rounds."""
    for count in range(FIRST_ROUNDS, len(ratios) + 1):
        if rule(ratios[:count]) <= bound:
            return statistics.median(ratios[:count]), count, False
    return statistics.median(ratios), len(ratios), True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="a bench/latency_stability.py output")
    parser.add_argument("--bounds", type=float, nargs="+", default=[0.02, 0.025, 0.03])
    args = parser.parse_args()
    lines = [line for line in args.log.read_text().splitlines() if line.startswith("{")]
    if not lines or "measurements" not in json.loads(lines[-1]):
        raise SystemExit(f"{args.log}: no JSON line with measurements (run the bench's arms)")
    measurements = json.loads(lines[-1])["measurements"]
    rows = [
        {"rule": name, "bound": bound, "busy": m["busy"], "preset": m["preset"]}
        | dict(
            zip(
                ("figure", "rounds", "flagged"), replay(m["round_ratios"], rule, bound), strict=True
            )
        )
        for name, rule in RULES.items()
        for bound in args.bounds
        for m in measurements
    ]
    frame = pd.DataFrame(rows)
    per_preset = frame.groupby(["rule", "bound", "busy", "preset"]).agg(
        cv=("figure", lambda figures: figures.std() / figures.mean()),
        rounds=("rounds", "median"),
        flagged=("flagged", "sum"),
        measurements=("figure", "size"),
    )
    table = per_preset.groupby(["rule", "bound", "busy"]).agg(
        max_cv=("cv", "max"),
        median_rounds=("rounds", "median"),
        flagged=("flagged", "sum"),
        measurements=("measurements", "sum"),
    )
    print(table.to_string(float_format=lambda value: f"{value:.3f}"))


if __name__ == "__main__":
    main()
