"""Which of a study's trials the fidelity check retrains.

A check that retrains only the best configs measures nothing about how the proxy sorts
the rest, so besides the front and the published presets it takes dominated trials
spread over proxy accuracy and latency (``stratified:K``), or seeded random ones
(``random:K``).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from studies.load import Study, eligible_trials
from studies.pareto import pareto_mask
from threshnet.presets import PUBLISHED_PRESETS

SELECTED_COLUMNS = [
    "number",
    "preset",
    "selected_as",
    "config_json",
    "val_acc",
    "latency_ms",
    "seed",
]


@dataclass(frozen=True)
class Selection:
    """Which trials' configs to retrain."""

    front: bool = False
    presets: bool = False
    random: int = 0  # this many more finished trials, drawn at random
    # dominated trials spread over accuracy and latency: up to this many configs in all,
    # and at least a quarter of it dominated ones
    stratified: int = 0


def parse_selection(text: str) -> Selection:
    """``front,presets,random:K,stratified:K`` (any of them, in any order) as a Selection."""
    chosen: dict[str, bool | int] = {}
    for item in (part.strip() for part in text.split(",")):
        name, _, count = item.partition(":")
        if item in ("front", "presets"):
            chosen[item] = True
        elif name in ("random", "stratified") and count.isdigit() and int(count) > 0:
            chosen[name] = int(count)
        else:
            raise argparse.ArgumentTypeError(
                f"unknown selection {item!r}: use front, presets, random:K and stratified:K "
                "(K >= 1), comma-separated"
            )
    return Selection(**chosen)  # type: ignore[arg-type]


def stratified_pick(frame: pd.DataFrame, count: int, *, seed: int) -> pd.DataFrame:
    """``count`` rows of ``frame`` spread over its ``val_acc`` x ``latency_ms`` plane: the
    rows are binned by quantiles of both (about sqrt(count) bins each) and the cells are
    visited in turn, one seeded draw from each non-empty cell per visit."""
    if count >= len(frame):
        return frame
    bins = max(1, math.ceil(math.sqrt(count)))
    accuracy_bin = pd.qcut(frame["val_acc"].rank(method="first"), bins, labels=False)
    latency_bin = pd.qcut(frame["latency_ms"].rank(method="first"), bins, labels=False)
    cells = [
        list(np.random.default_rng([seed, index]).permutation(members.index.to_numpy()))
        for index, (_, members) in enumerate(frame.groupby([accuracy_bin, latency_bin]))
    ]
    picked: list[int] = []
    while len(picked) < count:
        for cell in cells:
            if cell and len(picked) < count:
                picked.append(cell.pop())
    return frame.loc[sorted(picked)]


def select_configs(study: Study, selection: Selection, *, seed: int = 0) -> pd.DataFrame:
    """The chosen finished, full-fidelity trials (SELECTED_COLUMNS), by trial number;
    ``latency_ms`` is the study's (re-measured where the final pass ran)."""
    eligible = eligible_trials(study)
    if eligible.empty:
        return pd.DataFrame(columns=SELECTED_COLUMNS)
    chosen: list[pd.DataFrame] = []
    on_front = pareto_mask(eligible)
    if selection.front:
        chosen.append(eligible[on_front].assign(selected_as="front"))
    if selection.presets:
        presets = eligible[eligible["preset"].isin(PUBLISHED_PRESETS)]
        chosen.append(presets.assign(selected_as="preset"))

    def taken() -> pd.Series:
        return pd.concat(chosen)["number"] if chosen else pd.Series([], dtype="Int64")

    if selection.stratified:
        dominated = eligible[~on_front & ~eligible["number"].isin(taken())]
        # at least a quarter dominated, even where the front and presets fill the count
        wanted = max(selection.stratified - taken().nunique(), selection.stratified // 4)
        if wanted > 0 and not dominated.empty:
            picked = stratified_pick(dominated, wanted, seed=seed)
            chosen.append(picked.assign(selected_as="stratified"))
    rest = eligible[~eligible["number"].isin(taken())]
    if selection.random and not rest.empty:
        draw = np.random.default_rng(seed).choice(
            len(rest), size=min(selection.random, len(rest)), replace=False
        )
        chosen.append(rest.iloc[np.sort(draw)].assign(selected_as="random"))
    if not chosen:
        return pd.DataFrame(columns=SELECTED_COLUMNS)
    picked = pd.concat(chosen)[SELECTED_COLUMNS].drop_duplicates("number")  # front first
    return picked.sort_values("number").reset_index(drop=True)
