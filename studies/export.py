"""``python -m studies.export <study-dir> [--out DIR] [--pareto | --trial N ...]``.

Writes one JSON config per chosen trial, in the builder's own format (loadable by
``ThreshNetConfig.load``, ``threshnet.profile --config`` and ``threshnet.train
--config``), plus ``index.csv`` with each config's proxy accuracy, latency, params and
MACs. Default: the Pareto front, into ``<study-dir>/configs/``.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from studies.load import StudyError, eligible_trials, load_study
from studies.pareto import pareto_front
from threshnet.cli import ArgumentParser, UserError, run_cli
from threshnet.config import ThreshNetConfig
from threshnet.fileio import atomic_write_text

PROG = "studies.export"
INDEX_COLUMNS = ("file", "trial", "preset", "val_acc", "latency_ms", "params", "macs", "on_front")


def config_file_name(row: pd.Series) -> str:
    suffix = f"-{row['preset']}" if row["preset"] else ""
    return f"trial-{int(row['number']):04d}{suffix}.json"


def export_configs(study_dir: str | Path, out: str | Path | None, trials: list[int] | None) -> Path:
    """Write the configs of ``trials`` (None: the Pareto front); returns the index path."""
    try:
        study = load_study(study_dir)
    except StudyError as error:
        raise UserError(str(error)) from None
    eligible = eligible_trials(study)
    front_numbers = set(pareto_front(eligible)["number"].tolist())
    if trials is None:
        chosen = eligible[eligible["number"].isin(front_numbers)]
        if chosen.empty:
            raise UserError(f"study {study.root} has no finished, feasible trials to export yet")
    else:
        table = study.trials
        missing = sorted(set(trials) - set(table["number"].tolist()))
        if missing:
            raise UserError(f"study {study.root} has no trial(s) {', '.join(map(str, missing))}")
        chosen = table[table["number"].isin(trials)]
        unfinished = chosen[chosen["status"] != "ok"]
        if not unfinished.empty:
            first = unfinished.iloc[0]
            raise UserError(
                f"trial {int(first['number'])} has status '{first['status']}', "
                "not a measured config"
            )
    target = Path(out) if out is not None else study.root / "configs"
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {target}: {error.strerror}") from None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    for _, row in chosen.sort_values("latency_ms").iterrows():
        try:
            config = ThreshNetConfig.from_json(str(row["config_json"]))
        except ValueError as error:
            raise UserError(
                f"trial {int(row['number'])} has an unreadable config: {error}"
            ) from None
        name = config_file_name(row)
        try:
            config.save(target / name)
        except OSError as error:
            raise UserError(f"cannot write {target / name}: {error.strerror}") from None
        writer.writerow(
            [
                name,
                int(row["number"]),
                row["preset"],
                f"{row['val_acc']:.6f}",
                f"{row['latency_ms']:.6f}",
                int(row["params"]),
                int(row["macs"]),
                int(row["number"]) in front_numbers,
            ]
        )
    try:
        return atomic_write_text(target / "index.csv", buffer.getvalue())
    except OSError as error:
        raise UserError(f"cannot write {target / 'index.csv'}: {error.strerror}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", help="a directory written by search.run")
    parser.add_argument("--out", help="output directory (<study-dir>/configs)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--pareto", action="store_true", help="the Pareto front (default)")
    choice.add_argument("--trial", type=int, nargs="+", metavar="N", help="these trial numbers")
    args = parser.parse_args(argv)
    index = export_configs(args.study_dir, args.out, args.trial)
    rows = index.read_text(encoding="utf-8").count("\n") - 1
    print(f"exported {rows} config(s) to {index.parent} (index: {index.name})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
