"""``python -m studies.fidelity <study-dir>``: does the proxy rank configs like longer training?

A search ranks configs by a short proxy training. This check retrains chosen configs of
a finished (or running) study at a longer budget, ``--epochs`` (default 10 x the proxy's),
exactly as their trials trained otherwise (same images, validation split, optimiser,
schedule shape and seed), on Ray workers sized like the study's trials. Each config's
result is appended to ``<study-dir>/fidelity.csv`` as it ends, so an interrupted check
resumes where it stopped: rerun the same command. It then reports Spearman's rho and
Kendall's tau-b between proxy and longer-budget validation accuracy, each with a 95 %
paired-bootstrap interval over the configs; ``studies.report`` shows the rank-vs-rank plot.

    python -m studies.fidelity runs/study-x                       # front, presets, 8 random
    python -m studies.fidelity runs/study-x --epochs 40 --select front,random:12

``--select`` takes ``front`` (the Pareto front, re-measured latencies where the final
latency pass ran), ``presets`` (the published ThreshNets) and ``random:K`` (K more
finished trials, drawn with ``--seed``), comma-separated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from studies import schema
from studies.load import Study, StudyError, eligible_trials, load_study
from studies.pareto import pareto_mask
from threshnet.cli import (
    ArgumentParser,
    UserError,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_cli,
)
from threshnet.presets import PUBLISHED_PRESETS

PROG = "studies.fidelity"
DEFAULT_SELECT = "front,presets,random:8"
BUDGET_FACTOR = 10  # the default longer budget, in proxy budgets
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Selection:
    """Which trials' configs to retrain."""

    front: bool = False
    presets: bool = False
    random: int = 0


def parse_selection(text: str) -> Selection:
    """``front,presets,random:K`` (any of them, in any order) as a Selection."""
    front = presets = False
    random = 0
    for item in (part.strip() for part in text.split(",")):
        name, _, count = item.partition(":")
        if item == "front":
            front = True
        elif item == "presets":
            presets = True
        elif name == "random" and count.isdigit() and int(count) > 0:
            random = int(count)
        else:
            raise argparse.ArgumentTypeError(
                f"unknown selection {item!r}: use front, presets and random:K (K >= 1), "
                "comma-separated"
            )
    return Selection(front=front, presets=presets, random=random)


def select_configs(study: Study, selection: Selection, *, seed: int = 0) -> pd.DataFrame:
    """The chosen finished, full-fidelity trials: number, preset, selected_as, config_json,
    val_acc (the proxy's) and seed, by trial number."""
    columns = ["number", "preset", "selected_as", "config_json", "val_acc", "seed"]
    eligible = eligible_trials(study)
    if eligible.empty:
        return pd.DataFrame(columns=columns)
    chosen: list[pd.DataFrame] = []
    if selection.front and not eligible.empty:
        chosen.append(eligible[pareto_mask(eligible)].assign(selected_as="front"))
    if selection.presets:
        presets = eligible[eligible["preset"].isin(PUBLISHED_PRESETS)]
        chosen.append(presets.assign(selected_as="preset"))
    taken = pd.concat(chosen)["number"] if chosen else pd.Series([], dtype="Int64")
    rest = eligible[~eligible["number"].isin(taken)]
    if selection.random and not rest.empty:
        draw = np.random.default_rng(seed).choice(
            len(rest), size=min(selection.random, len(rest)), replace=False
        )
        chosen.append(rest.iloc[np.sort(draw)].assign(selected_as="random"))
    if not chosen:
        return pd.DataFrame(columns=columns)
    picked = pd.concat(chosen)[columns].drop_duplicates("number")  # front before preset
    return picked.sort_values("number").reset_index(drop=True)


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


@dataclass(frozen=True)
class FidelitySummary:
    """How the proxy's ranking agrees with the longer budget's, over ``configs``."""

    proxy_epochs: int
    epochs: int
    configs: pd.DataFrame  # the retrained configs that finished: number, preset, accuracies
    spearman: Correlation
    kendall: Correlation
    failed: int

    def line(self) -> str:
        return (
            f"proxy ({self.proxy_epochs} epochs) vs {self.epochs} epochs over "
            f"{len(self.configs)} configs: Kendall tau {self.kendall.text()}, Spearman rho "
            f"{self.spearman.text()} ({CONFIDENCE:.0%} bootstrap intervals)"
            + (f"; {self.failed} failed" if self.failed else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "proxy_epochs": self.proxy_epochs,
            "epochs": self.epochs,
            "configs": len(self.configs),
            "kendall_tau": self.kendall.to_dict(),
            "spearman_rho": self.spearman.to_dict(),
            "failed": self.failed,
        }


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.kendalltau(x, y).statistic)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.spearmanr(x, y).statistic)


def _correlation(
    x: np.ndarray, y: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], float], seed: int
) -> Correlation:
    """``statistic`` of the pairs and its percentile interval over paired resamples.

    Written out rather than ``scipy.stats.bootstrap``: with a dozen configs some resamples
    repeat one pair only, where a rank correlation is undefined; scipy then returns no
    interval at all, while these resamples are left out here.
    """
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), float("nan"))
    value = statistic(x, y)
    picks = np.random.default_rng(seed).integers(0, len(x), size=(BOOTSTRAP_RESAMPLES, len(x)))
    with np.errstate(invalid="ignore", divide="ignore"):
        resampled = np.array(
            [statistic(x[p], y[p]) for p in picks if np.ptp(x[p]) > 0 and np.ptp(y[p]) > 0]
        )
    resampled = resampled[np.isfinite(resampled)]
    if len(resampled) < BOOTSTRAP_RESAMPLES // 2:
        return Correlation(value, float("nan"), float("nan"))
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Correlation(value, float(low), float(high))


def fidelity_summary(
    study: Study, *, epochs: int | None = None, seed: int = 0
) -> FidelitySummary | None:
    """The check at ``epochs`` (default: the longest budget checked); None without one."""
    table = study.fidelity
    if table is None or table.empty:
        return None
    if epochs is None:
        epochs = int(table["epochs"].max())
    at_budget = table[table["epochs"] == epochs].drop_duplicates("number", keep="last")
    ok = at_budget[at_budget["status"] == "ok"].sort_values("number").reset_index(drop=True)
    x = ok["proxy_val_acc"].to_numpy(dtype=float)
    y = ok["val_acc"].to_numpy(dtype=float)
    return FidelitySummary(
        proxy_epochs=study.proxy_epochs,
        epochs=epochs,
        configs=ok,
        spearman=_correlation(x, y, _spearman, seed),
        kendall=_correlation(x, y, _kendall, seed),
        failed=int((at_budget["status"] != "ok").sum()),
    )


def _row_line(row: dict[str, Any], proxy: pd.Series, proxy_epochs: int) -> str:
    name = f" ({proxy['preset']})" if proxy["preset"] else ""
    if row["status"] != "ok":
        return f"trial {row['number']}{name}: failed: {row.get('error', '')}"
    return (
        f"trial {row['number']}{name}: val_acc {proxy['val_acc']:.4f} at {proxy_epochs} "
        f"epochs -> {row['val_acc']:.4f} at {row['epochs']}, {row['train_seconds']:.0f} s"
    )


def _run_resources(study: Study, args: argparse.Namespace) -> dict[str, Any]:
    """The study's last run's resources, with the flags given here applied."""
    runs = study.manifest.get("runs") or [{}]
    recorded = runs[-1].get("resources", {})
    chosen = {
        "cpus_per_trial": recorded.get("cpus_per_trial", 1.0),
        "gpus_per_trial": recorded.get("gpus_per_trial"),
        "num_cpus": recorded.get("num_cpus"),
        "cache_dir": recorded.get("cache_dir"),
    }
    given = {
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "num_cpus": args.num_cpus,
        "cache_dir": args.cache_dir,
        "address": args.address,
        "max_concurrent": args.max_concurrent,
    }
    chosen.update({key: value for key, value in given.items() if value is not None})
    if args.address:
        chosen.pop("num_cpus", None)
    return chosen


def run_fidelity(args: argparse.Namespace) -> FidelitySummary | None:
    """Retrain what ``args`` selects (what fidelity.csv lacks), then summarise."""
    # The retraining runs on Ray workers, which is the search's job: imported here, so
    # that reading a study (and the report) imports neither search nor Ray.
    from search.retrain import RetrainJob, retrain_configs
    from search.settings import RunResources
    from search.study import StudyDirectory

    root = Path(args.study_dir)
    try:
        study = load_study(root)
    except StudyError as error:
        raise UserError(str(error)) from None
    epochs = args.epochs or BUDGET_FACTOR * study.proxy_epochs
    if epochs <= study.proxy_epochs:
        raise UserError(
            f"--epochs {epochs} is not longer than the proxy's {study.proxy_epochs} epochs"
        )
    resources = _run_resources(study, args)
    if resources.get("gpus_per_trial") and not args.address and not torch.cuda.is_available():
        raise UserError(
            f"--gpus-per-trial {resources['gpus_per_trial']:g} needs a GPU, but this machine "
            "has no usable CUDA GPU (give --gpus-per-trial 0, or --address of a Ray cluster "
            "with GPUs)"
        )
    chosen = select_configs(study, args.select, seed=args.seed)
    if chosen.empty:
        raise UserError(f"study {root} has no finished, full-fidelity trial to retrain yet")
    with StudyDirectory(root).fidelity_lock():
        schema.drop_cut_fidelity_row(root)
        done = schema.read_fidelity(root)
        finished = (
            set()
            if done is None
            else set(done[(done["epochs"] == epochs) & (done["status"] == "ok")]["number"])
        )
        todo = chosen[~chosen["number"].isin(finished)]
        print(
            f"{PROG}: {len(chosen)} configs selected; {len(chosen) - len(todo)} already "
            f"retrained at {epochs} epochs; retraining {len(todo)}",
            flush=True,
        )
        by_number = chosen.set_index("number")

        def record(row: dict[str, Any]) -> None:
            proxy = by_number.loc[row["number"]]
            row = {
                **row,
                "preset": proxy["preset"],
                "selected_as": proxy["selected_as"],
                "proxy_epochs": study.proxy_epochs,
                "proxy_val_acc": proxy["val_acc"],
                "error": " ".join(str(row.get("error", "")).split()),
            }
            schema.append_fidelity(root, row)
            print(_row_line(row, proxy, study.proxy_epochs), flush=True)

        if not todo.empty:
            jobs = [
                RetrainJob(int(r.number), str(r.config_json), int(r.seed))
                for r in todo.itertuples()
            ]
            try:
                retrain_configs(
                    study.settings,
                    jobs,
                    epochs=epochs,
                    resources=RunResources(trials=len(jobs), **resources),
                    on_row=record,
                )
            except OSError as error:
                raise UserError(f"cannot write into {root}: {error.strerror}") from None
    return fidelity_summary(load_study(root), epochs=epochs, seed=args.seed)


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", help="a directory written by search.run")
    parser.add_argument(
        "--epochs",
        type=positive_int,
        help=f"the longer budget (default: {BUDGET_FACTOR} x the study's proxy epochs)",
    )
    parser.add_argument(
        "--select",
        type=parse_selection,
        default=DEFAULT_SELECT,  # argparse parses a string default with the type
        help=f"which trials' configs: front, presets, random:K, comma-separated ({DEFAULT_SELECT})",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="for random:K and the bootstrap (0)"
    )
    ray = parser.add_argument_group("resources (default: those of the study's last run)")
    ray.add_argument("--cpus-per-trial", type=positive_float, help="CPUs per retrained config")
    ray.add_argument("--gpus-per-trial", type=non_negative_float, help="fractions allowed")
    ray.add_argument("--max-concurrent", type=positive_int, help="configs at once")
    ray.add_argument("--address", help="join this Ray cluster instead of starting one")
    ray.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray (all)")
    ray.add_argument("--cache-dir", help="decoded-data cache (the study's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    summary = run_fidelity(args)
    if summary is not None:
        print(summary.line())
        print(f"the report shows the rank plot: python -m studies.report {args.study_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
