"""The proxy-fidelity ladder of a study: how well each cheaper ranking agrees with the long
budget's, from ``fidelity.csv`` (written by ``python -m search.fidelity``).

    python -m studies.fidelity runs/study-x          # the ladder table, as last checked

A rung is a training budget, ``EPOCHSxIMAGES`` (images: ``proxy``, the study's
proxy-training images; ``all``, the whole training split less validation; or a count), or
a zero-cost score computed at initialisation (params, macs, synflow). Against the long
budget (the largest one checked) each rung gets Kendall's tau-b and Spearman's rho with
95 % paired-bootstrap intervals, the top-k overlap (k = the long budget's front size), the
front recall (the share of the long budget's accuracy/latency front that the rung's front
contains) and its cost in seconds per config. The proxy's second seed gives the
seed-noise ceiling: the tau between two seeds of the proxy, which no proxy can beat.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from studies.fidelity_stats import (
    CONFIDENCE,
    Correlation,
    correlation,
    front,
    front_recall,
    kendall,
    spearman,
    top_k_overlap,
)
from studies.load import Study, StudyError, eligible_trials, load_study
from threshnet.cli import ArgumentParser, UserError, non_negative_int, run_cli

PROG = "studies.fidelity"
SEARCH = "search"  # the rung of the search's own proxy results
# A budget "ranks like the long one" when its Kendall tau is at least ADVICE_TAU and its
# interval's low end at least ADVICE_LOW (the rule the product's default proxy comes from).
ADVICE_TAU = 0.7
ADVICE_LOW = 0.5
ADVICE_MIN_CONFIGS = 8  # fewer, and a bootstrap interval collapses on a lucky order
_BUDGET = re.compile(r"^(\d+)x(proxy|all|\d+)$")


@dataclass(frozen=True, order=True)
class Budget:
    """A training rung: ``epochs`` over ``images`` ("proxy", "all" or a count)."""

    epochs: int
    images: str

    @property
    def label(self) -> str:
        return f"{self.epochs}x{self.images}"


def parse_budget(text: str) -> Budget:
    """``EPOCHSxIMAGES`` as a Budget (argparse type)."""
    match = _BUDGET.match(text.strip())
    if not match or int(match[1]) < 1 or match[2] == "0":
        raise argparse.ArgumentTypeError(
            f"expected EPOCHSxIMAGES (epochs >= 1; images: proxy, all or a count >= 1), "
            f"got {text!r}"
        )
    return Budget(int(match[1]), match[2])


def parse_budgets(text: str) -> tuple[Budget, ...]:
    """Comma-separated budgets (``1xproxy,4xproxy,2xall``); empty for none."""
    return tuple(parse_budget(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class RungAgreement:
    """One rung's ranking against the long budget's, over the configs both have."""

    rung: str
    kind: str  # search, trained or zero-cost
    configs: int
    seconds: float  # median per config
    images: float  # training images seen per config (epochs x images; 0: zero-cost)
    kendall: Correlation
    spearman: Correlation
    top_k: float
    front_recall: float

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: _json(v) for k, v in vars(self).items() if not isinstance(v, Correlation)},
            "kendall_tau": self.kendall.to_dict(),
            "spearman_rho": self.spearman.to_dict(),
        }


@dataclass(frozen=True)
class Ladder:
    """Every rung checked on a study against its long budget."""

    long: str  # the long budget's rung
    proxy: str  # the search's proxy budget, as a rung
    k: int  # the long budget's front size over the configs (top-k overlap's k)
    rungs: list[RungAgreement]
    ceiling: Correlation  # tau between the proxy's two seeds
    configs: pd.DataFrame  # one row per config: number, preset, latency, each rung's figure
    failed: int
    long_seconds: float = float("nan")
    long_images: float = float("nan")

    def rung(self, name: str) -> RungAgreement | None:
        return next((row for row in self.rungs if row.rung == name), None)

    def line(self) -> str:
        """The search's proxy against the long budget, in one line."""
        proxy = self.rung(SEARCH)
        if proxy is None:
            return f"no config has both the proxy and the long budget ({self.long}) yet"
        return (
            f"proxy ({self.proxy}) vs {self.long} over {proxy.configs} configs: Kendall tau "
            f"{proxy.kendall.text()}, Spearman rho {proxy.spearman.text()} "
            f"({CONFIDENCE:.0%} bootstrap intervals); seed-noise ceiling tau "
            f"{self.ceiling.text()}" + (f"; {self.failed} failed" if self.failed else "")
        )

    def advised(self) -> tuple[RungAgreement, bool] | None:
        """The training budget to search with, and whether it meets the rule: the cheapest
        (fewest images seen a config) whose tau against the long budget is >= ADVICE_TAU
        with its interval's low end >= ADVICE_LOW; else the one that misses it by least.
        Candidates: the trained budgets and the search's own proxy (a second seed is the
        ceiling, not a budget) ranked over all the long budget's configs, at least
        ADVICE_MIN_CONFIGS, with an interval. None when there is no candidate yet."""
        needed = max(ADVICE_MIN_CONFIGS, len(self.configs))
        budgets = [
            row
            for row in self.rungs
            if row.kind in ("trained", SEARCH)
            and " seed+" not in row.rung
            and row.configs >= needed
            and np.isfinite(row.kendall.low)
        ]
        if not budgets:
            return None
        meeting = [row for row in budgets if _shortfall(row) <= 0]
        if meeting:
            return meeting[0], True  # self.rungs is sorted cheapest first
        return min(budgets, key=_shortfall), False

    def advice(self) -> str:
        """Which budget to search with, by the rule, with the ``search.run`` flags that
        give it, and how the zero-cost scores compare with the search's proxy."""
        rule = (
            f"Kendall tau >= {ADVICE_TAU:.2f} with its {CONFIDENCE:.0%} interval's low end "
            f">= {ADVICE_LOW:.2f}"
        )
        advised = self.advised()
        if advised is None:
            return (
                f"too few configs to advise a budget: the rule ({rule}) needs a budget "
                f"ranked over all of {self.long}'s configs, at least {ADVICE_MIN_CONFIGS} "
                f"(it has {len(self.configs)})"
            )
        row, met = advised
        found = (
            f"the cheapest budget that ranks like {self.long} ({rule}) is"
            if met
            else f"no budget ranks like {self.long} by the rule ({rule}); the closest is"
        )
        text = (
            f"{found} {self._name(row.rung)}: tau {row.kendall.text()} over {row.configs} "
            f"configs{self._cost(row)} (search.run {_flags(row.rung)})"
        )
        scores = [
            other
            for other in self.rungs
            if other.kind == "zero-cost" and np.isfinite(other.kendall.value)
        ]
        proxy = self.rung(SEARCH)
        if scores and proxy is not None and np.isfinite(proxy.kendall.value):
            best = max(scores, key=lambda other: other.kendall.value)
            verdict = "as well as" if best.kendall.value >= proxy.kendall.value else "worse than"
            text += (
                f"; the zero-cost scores rank {verdict} the search's proxy (best: "
                f"{best.rung}, tau {best.kendall.text()}, against {proxy.kendall.text()})"
            )
        return text

    def _cost(self, row: RungAgreement) -> str:
        """``row``'s training images a config, and their ratio to the search's proxy's."""
        if not np.isfinite(row.images):
            return ""
        proxy = self.rung(SEARCH)
        ratio = (
            f", {row.images / proxy.images:.2g}x the search's proxy's"
            if row.rung != SEARCH and proxy is not None and np.isfinite(proxy.images)
            else ""
        )
        return f", {row.images:,.0f} training images a config{ratio}"

    def _name(self, rung: str) -> str:
        return f"{self.proxy} (the search's proxy)" if rung == SEARCH else rung

    def table(self) -> str:
        """The ladder as a Markdown table, cheapest rung first."""
        lines = [
            f"| rung | kind | configs | images/config | s/config | Kendall tau [95 % CI] | "
            f"Spearman rho [95 % CI] | top-{self.k} overlap | front recall |",
            "|---|---|---:|---:|---:|---|---|---:|---:|",
        ]
        for row in self.rungs:
            name = f"{self.proxy} (search)" if row.rung == SEARCH else row.rung
            lines.append(
                f"| {name} | {row.kind} | {row.configs} | {row.images:,.0f} | {row.seconds:.3g} | "
                f"{row.kendall.text()} | {row.spearman.text()} | {row.top_k:.2f} | "
                f"{row.front_recall:.2f} |"
            )
        lines.append(
            f"| {self.long} (long) | trained | {len(self.configs)} | {self.long_images:,.0f} | "
            f"{self.long_seconds:.3g} "
            "| 1 | 1 | 1.00 | 1.00 |"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "long": self.long,
            "proxy": self.proxy,
            "k": self.k,
            "configs": len(self.configs),
            "long_seconds": _json(self.long_seconds),
            "long_images": _json(self.long_images),
            "seed_noise_ceiling": self.ceiling.to_dict(),
            "rungs": [row.to_dict() for row in self.rungs],
            "failed": self.failed,
            "advice": self._advice_dict(),
            # the search's proxy against the long budget, as the report has always said
            "kendall_tau": (self.rung(SEARCH) or _NO_RUNG).kendall.to_dict(),
            "spearman_rho": (self.rung(SEARCH) or _NO_RUNG).spearman.to_dict(),
        }

    def _advice_dict(self) -> dict[str, Any] | None:
        advised = self.advised()
        if advised is None:
            return None
        row, met = advised
        return {
            "rung": self.proxy if row.rung == SEARCH else row.rung,
            "meets_rule": met,
            "rule": {"kendall_tau": ADVICE_TAU, "interval_low": ADVICE_LOW},
            "text": self.advice(),
        }


def _shortfall(row: RungAgreement) -> float:
    """How far ``row`` is from the advice's rule (<= 0: it meets it)."""
    return max(ADVICE_TAU - row.kendall.value, ADVICE_LOW - row.kendall.low)


def _flags(rung: str) -> str:
    """The ``search.run`` flags that train a study's trials at ``rung`` (batch, optimiser
    and schedule shape stay the study's)."""
    match = _BUDGET.match(rung)
    if rung == SEARCH or match is None:
        return "with the study's own settings"
    epochs, images = match[1], match[2]
    if images == "proxy":
        return f"--epochs {epochs} with the study's training images"
    if images == "all":
        return f"--epochs {epochs} --train-fraction 1 without --max-train-images"
    return f"--epochs {epochs} --max-train-images {images} --train-fraction 1"


def _json(value: Any) -> Any:
    """``value`` for JSON: NaN as null."""
    return None if isinstance(value, float) and np.isnan(value) else value


_NAN = Correlation(float("nan"), float("nan"), float("nan"))
_NO_RUNG = RungAgreement(SEARCH, SEARCH, 0, np.nan, np.nan, _NAN, _NAN, np.nan, np.nan)


def long_rung(
    columns: dict[str, tuple[str, pd.Series, float, float]], proxy_images: float
) -> str | None:
    """The trained rung (at the trials' own seeds) that sees the most training images per
    config, if it sees more than the proxy (``proxy_images``); a table from before rungs
    has no image counts: its ``<epochs>xproxy`` rungs count as epochs x the proxy's."""
    seen = {}
    for name, (kind, _, _, images) in columns.items():
        if kind != "trained" or " seed+" in name:
            continue
        if np.isnan(images):
            match = _BUDGET.match(name)
            if not match or match[2] != "proxy":
                continue
            images = int(match[1]) * proxy_images  # ... of the proxy's epoch
        seen[name] = images
    if not seen:
        return None
    long = max(seen, key=lambda name: seen[name])
    return long if np.isnan(proxy_images) or seen[long] > proxy_images else None


def _rung_name(rung: str, seed_offset: int) -> str:
    return rung if seed_offset == 0 else f"{rung} seed+{seed_offset}"


def _rung_columns(
    table: pd.DataFrame, trials: pd.DataFrame
) -> dict[str, tuple[str, pd.Series, float, float]]:
    """rung name -> (kind, figure by config number, median seconds and images per config)."""
    seeds = trials.set_index("number")["seed"]
    ok = table[table["status"] == "ok"].copy()
    ok["offset"] = ok["seed"] - ok["number"].map(seeds).fillna(ok["seed"])
    columns: dict[str, tuple[str, pd.Series, float, float]] = {}
    for (rung, kind, offset), rows in ok.groupby(["rung", "kind", "offset"], sort=False):
        latest = rows.drop_duplicates("number", keep="last").set_index("number")
        figure = latest["score"] if kind == "zero-cost" else latest["val_acc"]
        seconds = float(latest["train_seconds"].median())
        seen = (latest["epochs"] * latest["train_images"].astype("Float64")).dropna()
        images = 0.0 if kind == "zero-cost" else np.nan if seen.empty else float(seen.median())
        name = _rung_name(str(rung), int(offset))
        columns[name] = (str(kind), figure.astype(float), seconds, images)
    return columns


def ladder_summary(study: Study, *, seed: int = 0) -> Ladder | None:
    """The ladder of ``study`` against its long budget; None before a trained rung
    larger than the proxy has a result."""
    table = study.fidelity
    if table is None or table.empty:
        return None
    trials = eligible_trials(study)
    columns = _rung_columns(table, trials)
    proxy_seconds = float(trials["train_seconds"].median()) if len(trials) else np.nan
    proxy_images = (
        float((trials["images_per_second"] * trials["train_seconds"]).median())
        if len(trials) and "images_per_second" in trials
        else np.nan
    )
    long = long_rung(columns, proxy_images)
    if long is None:
        return None
    _, long_acc, long_seconds, long_images = columns.pop(long)
    configs = trials[trials["number"].isin(long_acc.index)].set_index("number")
    configs = configs[["preset", "latency_ms", "val_acc", "train_seconds"]].rename(
        columns={"val_acc": SEARCH, "train_seconds": "search_seconds"}
    )
    configs[long] = long_acc
    numbers = configs.index.to_numpy()
    latency = configs["latency_ms"].to_numpy(dtype=float)
    truth = configs[long].to_numpy(dtype=float)
    k = int(front(truth, latency).sum()) if len(configs) else 0
    everything = {SEARCH: (SEARCH, configs[SEARCH], proxy_seconds, proxy_images), **columns}
    rungs = []
    per_epoch = proxy_images / study.proxy_epochs if study.proxy_epochs else np.nan
    for name, (kind, figure, seconds, images) in everything.items():
        if np.isnan(images):  # a table from before image counts: <e>xproxy is e epochs'
            match = _BUDGET.match(name.split(" ")[0])
            images = int(match[1]) * per_epoch if match and match[2] == "proxy" else images
        configs[name] = figure.reindex(numbers).to_numpy(dtype=float)
        both = configs[[name, long]].dropna()
        x, y = both[name].to_numpy(dtype=float), both[long].to_numpy(dtype=float)
        latency_both = configs.loc[both.index, "latency_ms"].to_numpy(dtype=float)
        k_both = int(front(y, latency_both).sum()) if len(both) else 0
        rungs.append(
            RungAgreement(
                rung=name,
                kind=kind,
                configs=len(both),
                seconds=seconds,
                images=images,
                kendall=correlation(x, y, kendall, seed),
                spearman=correlation(x, y, spearman, seed),
                top_k=top_k_overlap(x, y, k_both),
                front_recall=front_recall(x, y, latency_both),
            )
        )
    rungs.sort(key=lambda row: (np.nan_to_num(row.images, nan=np.inf), row.seconds, row.rung))
    proxy = study_proxy_label(study)
    second = f"{proxy} seed+1"
    if second in configs.columns:
        pair = configs[[SEARCH, second]].dropna()
        ceiling = correlation(pair[SEARCH].to_numpy(), pair[second].to_numpy(), kendall, seed)
    else:
        ceiling = _NAN
    keys = ["number", "rung", "seed"]
    ok = table.loc[table["status"] == "ok", keys].drop_duplicates()
    failed = table.loc[table["status"] != "ok", keys].drop_duplicates()
    still_failed = len(failed.merge(ok, how="left", indicator=True).query("_merge == 'left_only'"))
    return Ladder(
        long=long,
        proxy=proxy,
        k=k,
        rungs=rungs,
        ceiling=ceiling,
        configs=configs.reset_index(),
        failed=still_failed,
        long_seconds=long_seconds,
        long_images=long_images,
    )


def study_proxy_label(study: Study) -> str:
    """The search's proxy budget as a rung (``<epochs>xproxy``)."""
    return f"{study.proxy_epochs}xproxy"


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", help="a directory written by search.run")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="of the bootstrap (0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        study = load_study(Path(args.study_dir))
    except StudyError as error:
        raise UserError(str(error)) from None
    ladder = ladder_summary(study, seed=args.seed)
    if ladder is None:
        raise UserError(
            f"{args.study_dir} has no fidelity check yet: run python -m search.fidelity "
            f"{args.study_dir}"
        )
    print(ladder.table())
    print(ladder.line())
    print(f"advice: {ladder.advice()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
