"""``python -m studies.table <study-dir> [--trained DIR ...]``: the paper's results table.

The ThreshNet paper compares models by time per image, CIFAR-10 error, FLOPs, MAdd,
memory and parameters. This regenerates that table for a study: the published presets,
the Pareto front, any configs exported into ``<study-dir>/configs/`` (studies.export) and
the baselines the study measured (``search.run --baselines``), on the study's footing:

- time per image: the study's batch-1 latency on its device, in ms (re-measured where the
  final latency pass ran), said with the device it was timed on;
- C10 error: 100 x (1 - final-epoch test accuracy) of ``threshnet.train`` runs of that
  exact config (HarDNet baselines included; the other families are not trained by this
  toolkit) found under ``--trained`` (runs on a subset, ``--max-train-images`` or
  ``--max-test-images``, are left out) (the mean when there are several, e.g. seeds),
  and the best-epoch error the paper reports beside it; "not trained" otherwise;
- FLOPs, MAdd and memory as torchstat counts them at 224 x 224, the paper's footing
  (threshnet.costs: "FLOPs" = MACs plus BN/ReLU/pool terms, "memory" = every layer's output
  summed); parameters with the study's classifier head.

It writes ``<study-dir>/table.md`` and ``table.csv`` and prints the Markdown.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from studies.load import Study, StudyError, eligible_trials, load_study
from studies.pareto import pareto_front
from threshnet.baselines import baseline_config, build_baseline
from threshnet.cli import ArgumentParser, UserError, run_cli
from threshnet.config import ThreshNetConfig
from threshnet.costs import StaticCosts, module_costs, static_costs
from threshnet.fileio import atomic_write_text
from threshnet.presets import PUBLISHED_PRESETS

PROG = "studies.table"
PAPER_INPUT = 224  # the paper's FLOPs, MAdd and memory are torchstat's at 224 x 224
NOT_TRAINED = "not trained"
COLUMNS = (
    "model",
    "trial",
    "ms per image",
    "C10 error %",
    "C10 error % (best epoch)",
    "FLOPs G",
    "MAdd G",
    "memory MB",
    "params M",
    "val acc (proxy)",
)


def _config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def trained_errors(directories: Sequence[Path]) -> dict[str, list[tuple[float, float]]]:
    """Config (canonical JSON) -> (final-epoch, best-epoch) test errors in %, of every
    ``summary.json`` that ``threshnet.train`` wrote under ``directories``."""
    found: dict[str, list[tuple[float, float]]] = {}
    for directory in directories:
        if not directory.is_dir():
            raise UserError(f"--trained {directory} is not a directory")
        for path in sorted(directory.rglob("summary.json")):
            try:
                summary = json.loads(path.read_text(encoding="utf-8"))
                if summary.get("max_train_images") or summary.get("max_test_images"):
                    continue  # a quick run on a subset: not the paper's error
                config = ThreshNetConfig.from_dict(summary["config"]).to_dict()
                errors = (
                    100 * (1 - float(summary["final_epoch_test_acc"])),
                    100 * (1 - float(summary["best_epoch_test_acc"])),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a threshnet.train summary
            found.setdefault(_config_key(config), []).append(errors)
    return found


def _rows(study: Study) -> pd.DataFrame:
    """The presets, the front and the exported trials, once each, fastest first."""
    eligible = eligible_trials(study)
    if eligible.empty:
        return eligible
    chosen = set(eligible.loc[eligible["preset"].isin(PUBLISHED_PRESETS), "number"])
    chosen |= set(pareto_front(eligible)["number"])
    index = study.root / "configs" / "index.csv"
    if index.exists():
        try:
            chosen |= set(pd.read_csv(index)["trial"].astype(int))
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            raise UserError(f"{index} is not an index written by studies.export") from None
    return eligible[eligible["number"].isin(chosen)].sort_values("latency_ms")


def _record(
    model: str,
    trial: int | str,
    measured: Any,
    costs: StaticCosts,
    runs: list[tuple[float, float]],
) -> dict[str, Any]:
    final = sum(e for e, _ in runs) / len(runs) if runs else None
    best = sum(b for _, b in runs) / len(runs) if runs else None
    return {
        "model": model,
        "trial": trial,
        "ms per image": round(float(measured.latency_ms), 3),
        "C10 error %": NOT_TRAINED if final is None else round(final, 2),
        "C10 error % (best epoch)": NOT_TRAINED if best is None else round(best, 2),
        "FLOPs G": round(costs.torchstat_flops / 1e9, 2),
        "MAdd G": round(costs.torchstat_madd / 1e9, 2),
        "memory MB": round(costs.activation_mb, 2),
        "params M": round(costs.params / 1e6, 2),
        "val acc (proxy)": round(float(measured.val_acc), 4),
    }


def results_table(study: Study, trained: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """One row per model of the table (see the module doc), fastest first."""
    records = []
    for row in _rows(study).itertuples():
        config = ThreshNetConfig.from_json(row.config_json)
        costs = static_costs(config, PAPER_INPUT)
        runs = trained.get(_config_key(config.to_dict()), [])
        records.append(
            _record(row.preset or f"trial {row.number}", int(row.number), row, costs, runs)
        )
    measured = study.baselines
    num_classes = int(study.settings["space"].get("num_classes", 10))
    for row in [] if measured is None else measured[measured["status"] == "ok"].itertuples():
        config = baseline_config(row.name)
        if config is not None:
            config = dataclasses.replace(config, num_classes=num_classes)
            costs = static_costs(config, PAPER_INPUT)
            runs = trained.get(_config_key(config.to_dict()), [])
        else:
            model = build_baseline(row.name, num_classes)
            costs, runs = module_costs(model, input_size=PAPER_INPUT), []
        records.append(_record(f"{row.name} (baseline)", "", row, costs, runs))
    table = pd.DataFrame(records, columns=list(COLUMNS))
    return table.sort_values("ms per image", kind="stable").reset_index(drop=True)


def _device(study: Study) -> str:
    names = study.trials.get("latency_device_name")
    known = names.dropna() if names is not None else pd.Series([], dtype=str)
    return str(known.mode().iloc[0]) if len(known) else "the study's device"


def markdown(table: pd.DataFrame, study: Study) -> str:
    """The table as Markdown, with what its columns mean."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(str(value) for value in row) + " |" for row in table.values),
    ]
    timed = (
        "re-measured by the final latency pass where it timed them steadily, else as the "
        "search timed them"
        if study.remeasured is not None
        else "as the search timed it"
    )
    notes = [
        f"Study {study.name}: ms per image = batch-1 latency on {_device(study)} ({timed}); "
        "C10 error = 100 x (1 - test accuracy) of threshnet.train runs of the same config "
        "(final epoch; the paper reports the best epoch, chosen on the test set); FLOPs, MAdd "
        f"and memory: torchstat's counts at {PAPER_INPUT}x{PAPER_INPUT}, as in the paper; "
        "val acc: the search's proxy validation accuracy.",
    ]
    return "\n".join([*lines, "", *notes]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", help="a directory written by search.run")
    parser.add_argument(
        "--trained",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="directories holding threshnet.train runs (their summary.json) for the error",
    )
    args = parser.parse_args(argv)
    try:
        study = load_study(args.study_dir)
    except StudyError as error:
        raise UserError(str(error)) from None
    table = results_table(study, trained_errors(args.trained))
    if table.empty:
        raise UserError(f"study {study.root} has no finished, feasible trial yet")
    text = markdown(table, study)
    try:
        atomic_write_text(study.root / "table.md", text)
        atomic_write_text(study.root / "table.csv", table.to_csv(index=False))
    except OSError as error:
        raise UserError(f"cannot write the table into {study.root}: {error.strerror}") from None
    print(text, end="")
    print(f"written: {study.root / 'table.md'}, {study.root / 'table.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
