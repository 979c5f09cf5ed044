"""``python -m search.fidelity <study-dir>``: does the proxy rank configs like longer training?

The check to run before trusting a study. It retrains chosen configs of a finished (or
running) study on Ray workers sized like its trials, at a long budget (``--long``, default
10 x the proxy's epochs on its images) and at a ladder of cheaper rungs (``--rungs``),
trains the proxy once more with another seed (the seed-noise ceiling), and scores each
config at initialisation (params, MACs, SynFlow). Each result is appended to
``<study-dir>/fidelity.csv`` as it ends, and a training keeps its state after each epoch
in ``<study-dir>/fidelity-checkpoints/`` until its row is written, so an interrupted check
resumes where it stopped, mid-training included: rerun the same command. It then prints
the ladder (studies.fidelity): per rung against the long budget, Kendall's tau-b and
Spearman's rho with 95 % bootstrap intervals, top-k overlap, front recall and seconds per
config; ``studies.report`` plots it.

    python -m search.fidelity runs/study-x                          # 10x, 16 configs
    python -m search.fidelity runs/study-x --long 6xall --rungs 1xproxy,4xproxy,2xall

A budget is ``EPOCHSxIMAGES``: images ``proxy`` (the study's proxy-training images),
``all`` (the training split less validation) or a count (a stratified cap). Every budget
keeps the study's validation split, optimiser and schedule shape. ``--select`` takes
``front``, ``presets``, ``stratified:K`` (dominated trials spread over proxy accuracy and
latency, up to K configs in all) and ``random:K``, comma-separated.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from search.setup.library_log import LIBRARY_LOG, library_output_to
from search.setup.settings import RunResources, StudySettings
from search.setup.study import StudyDirectory
from search.tasks.cluster import stop_on_sigterm
from search.tasks.retrain import RetrainJob, budget_images, load_settings, retrain_configs
from search.tasks.retrain_progress import RunningTrainings
from studies import schema
from studies.fidelity import Budget, ladder_summary, parse_budget, parse_budgets
from studies.fidelity_select import parse_selection, select_configs
from studies.load import Study, StudyError, load_study
from threshnet.cli import (
    ArgumentParser,
    UserError,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_cli,
)
from threshnet.config import ThreshNetConfig
from threshnet.fileio import atomic_write_text, remove_stale_temporaries
from threshnet.training.epoch_checkpoint import remove_checkpoint
from threshnet.zero_cost import ZERO_COST_SCORES, zero_cost_scores

PROG = "search.fidelity"
DEFAULT_SELECT = "front,presets,stratified:16"
BUDGET_FACTOR = 10  # the default long budget, in proxy epochs
SECOND_SEED = 1  # the proxy's second seed is the trial's seed plus this


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


def _plan(
    chosen: pd.DataFrame,
    budgets: list[tuple[Budget, int]],
    done: set[tuple[int, str, int]],
    directory: StudyDirectory,
) -> list[RetrainJob]:
    """The jobs ``done`` lacks, budget by budget in the order given, configs by number,
    each with its checkpoint in ``directory``."""
    jobs = []
    for budget, seed_offset in budgets:
        for row in chosen.itertuples():
            number, seed = int(row.number), int(row.seed) + seed_offset
            if (number, budget.label, seed) not in done:
                checkpoint = directory.fidelity_checkpoint(number, budget.label, seed)
                jobs.append(
                    RetrainJob(
                        number,
                        str(row.config_json),
                        seed,
                        budget.epochs,
                        budget.images,
                        checkpoint=str(checkpoint),
                    )
                )
    return jobs


def _sweep_checkpoints(directory: StudyDirectory, done: set[tuple[int, str, int]]) -> None:
    """Remove what a killed check left in the checkpoint folder and no run will read: a
    half-written file, and the checkpoint of a training whose row is already written
    (killed between the two). Checkpoints of trainings outside this run's plan stay."""
    folder = directory.fidelity_checkpoints
    if not folder.is_dir():
        return
    remove_stale_temporaries(folder, older_than=0.0)  # the fidelity lock is held: no writer
    for number, rung, seed in done:
        remove_checkpoint(directory.fidelity_checkpoint(number, rung, seed))


def _budgets(
    study: Study, settings: StudySettings, args: argparse.Namespace, cache_dir: str | None
) -> list[tuple[Budget, int]]:
    """(budget, seed offset) to train, in order: the proxy's second seed, the rungs
    cheaper than the proxy (minutes), the long budget, then the other rungs, cheapest
    first. Checks that the long budget is the largest."""
    proxy = Budget(study.proxy_epochs, "proxy")
    long = args.long or Budget(args.epochs or BUDGET_FACTOR * study.proxy_epochs, "proxy")
    rungs = (
        args.rungs
        if args.rungs is not None
        else ((Budget(1, "proxy"),) if proxy.epochs > 1 else ())
    )
    images = budget_images(settings, sorted({b.images for b in (proxy, long, *rungs)}), cache_dir)

    def seen(budget: Budget) -> int:
        return budget.epochs * images[budget.images]

    for budget in (proxy, *rungs):
        if seen(budget) >= seen(long):
            raise UserError(
                f"the long budget {long.label} ({seen(long):,} images seen) must exceed every "
                f"rung's and the proxy's; {budget.label} sees {seen(budget):,}"
            )
    cheaper = sorted({b for b in rungs if b != proxy}, key=seen)
    seeds = [(proxy, SECOND_SEED)] if args.proxy_seeds == 2 else []
    below_proxy = [(b, 0) for b in cheaper if seen(b) < seen(proxy)]
    above_proxy = [(b, 0) for b in cheaper if seen(b) >= seen(proxy)]
    return [*seeds, *below_proxy, (long, 0), *above_proxy]


def _zero_cost_rows(
    input_size: int, chosen: pd.DataFrame, table: pd.DataFrame | None
) -> list[dict[str, Any]]:
    """Zero-cost scores of the chosen configs that ``table`` lacks (computed here, in
    about a second each on a CPU: no Ray)."""
    have = set() if table is None else set(zip(table["number"], table["rung"], strict=True))
    rows = []
    for row in chosen.itertuples():
        if all((row.number, name) in have for name in ZERO_COST_SCORES):
            continue
        config = ThreshNetConfig.from_json(str(row.config_json))
        scores = zero_cost_scores(config, input_size=input_size, seed=int(row.seed))
        for name in ZERO_COST_SCORES:
            rows.append(
                {
                    "number": int(row.number),
                    "status": "ok",
                    "rung": name,
                    "kind": "zero-cost",
                    "epochs": 0,
                    "score": getattr(scores, name),
                    "train_seconds": scores.seconds,
                    "seed": int(row.seed),
                    "device": "cpu",
                    "finished_at": dt.datetime.now(dt.UTC).isoformat(),
                }
            )
    return rows


def run_check(args: argparse.Namespace) -> None:
    """Train and score what ``args`` asks for and fidelity.csv lacks; write fidelity.json."""
    root = Path(args.study_dir)
    try:
        study = load_study(root)
    except StudyError as error:
        raise UserError(str(error)) from None
    settings = load_settings(study.settings)
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
    budgets = _budgets(study, settings, args, resources.get("cache_dir"))
    directory = StudyDirectory(root)
    with directory.fidelity_lock():
        schema.drop_cut_fidelity_row(root)
        by_number = chosen.set_index("number")

        def record(row: dict[str, Any], *, show: bool = True) -> None:
            proxy = by_number.loc[row["number"]]
            images = row.pop("images", None)
            row = {
                "kind": "trained",
                "rung": None if images is None else f"{row['epochs']}x{images}",
                **row,
                "preset": proxy["preset"],
                "selected_as": proxy["selected_as"],
                "proxy_epochs": study.proxy_epochs,
                "proxy_val_acc": proxy["val_acc"],
                "error": " ".join(str(row.get("error", "")).split()),
            }
            schema.append_fidelity(root, row)
            if row["status"] == "ok" and images is not None:  # kept: its state is not needed
                remove_checkpoint(
                    directory.fidelity_checkpoint(row["number"], row["rung"], row["seed"])
                )
            if show:
                print(_row_line(row, proxy), flush=True)

        try:
            table = schema.read_fidelity(root)
            scores = _zero_cost_rows(settings.train.input_size, chosen, table)
            for row in scores:
                record(row, show=False)
            if scores:
                print(
                    f"{PROG}: zero-cost scores of {len(scores) // len(ZERO_COST_SCORES)} configs",
                    flush=True,
                )
            ok = table[table["status"] == "ok"] if table is not None else None
            done = (
                set() if ok is None else set(zip(ok["number"], ok["rung"], ok["seed"], strict=True))
            )
            _sweep_checkpoints(directory, done)
            jobs = _plan(chosen, budgets, done, directory)
            print(
                f"{PROG}: {len(chosen)} configs, rungs "
                + ", ".join(b.label + (f" (seed +{o})" if o else "") for b, o in budgets)
                + f"; {len(jobs)} trainings to go",
                flush=True,
            )
            if jobs:
                import ray  # noqa: F401  (first: its import sets up the "ray" logger)

                with library_output_to(root / LIBRARY_LOG):
                    retrain_configs(
                        settings,
                        jobs,
                        resources=RunResources(trials=len(jobs), **resources),
                        on_row=record,
                        prog=PROG,
                        on_wait=RunningTrainings(PROG),
                    )
            with contextlib.suppress(OSError):  # kept while a training has one
                directory.fidelity_checkpoints.rmdir()
            ladder = ladder_summary(load_study(root), seed=args.seed)
            if ladder is not None:
                atomic_write_text(
                    root / schema.FIDELITY_JSON, json.dumps(ladder.to_dict(), indent=1) + "\n"
                )
        except OSError as error:
            raise UserError(f"cannot write into {root}: {error.strerror}") from None
    if ladder is not None:
        print(ladder.table())
        print(ladder.line())
        print(f"advice: {ladder.advice()}")
        print(f"the report plots it: python -m studies.report {root}")


def _row_line(row: dict[str, Any], proxy: pd.Series) -> str:
    name = f"trial {row['number']}" + (f" ({proxy['preset']})" if proxy["preset"] else "")
    if row["status"] != "ok":
        return f"{name} {row['rung']}: failed: {row.get('error', '')}"
    return (
        f"{name} {row['rung']} seed {row['seed']}: val_acc {row['val_acc']:.4f} "
        f"(proxy {proxy['val_acc']:.4f}), {row['train_seconds']:.0f} s"
    )


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", help="a directory written by search.run")
    long = parser.add_mutually_exclusive_group()
    long.add_argument(
        "--long",
        type=parse_budget,
        help=f"the long budget, EPOCHSxIMAGES (default: {BUDGET_FACTOR} x the proxy's "
        "epochs on its images)",
    )
    long.add_argument(
        "--epochs", type=positive_int, help="the long budget's epochs, on the proxy's images"
    )
    parser.add_argument(
        "--rungs",
        type=parse_budgets,
        help="cheaper budgets, comma-separated EPOCHSxIMAGES (default: 1xproxy)",
    )
    parser.add_argument(
        "--proxy-seeds",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: train the proxy again with another seed for the seed-noise ceiling (2)",
    )
    parser.add_argument(
        "--select",
        type=parse_selection,
        default=DEFAULT_SELECT,  # argparse parses a string default with the type
        help=f"which trials' configs: front, presets, stratified:K, random:K ({DEFAULT_SELECT})",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="for the selection and the bootstrap (0)"
    )
    ray = parser.add_argument_group("resources (default: those of the study's last run)")
    ray.add_argument("--cpus-per-trial", type=positive_float, help="CPUs per training")
    ray.add_argument("--gpus-per-trial", type=non_negative_float, help="fractions allowed")
    ray.add_argument("--max-concurrent", type=positive_int, help="trainings at once")
    ray.add_argument("--address", help="join this Ray cluster instead of starting one")
    ray.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray (all)")
    ray.add_argument("--cache-dir", help="decoded-data cache (the study's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    stop_on_sigterm(PROG)
    run_check(_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
