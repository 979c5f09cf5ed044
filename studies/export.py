"""``python -m studies.export <study-dir> [--out DIR] [--pareto | --trial N ...] [--onnx]``,
or ``python -m studies.export --checkpoint FILE [--out FILE.onnx]`` for a trained network.

Writes one JSON config per chosen trial, in the builder's own format (loadable by
``ThreshNetConfig.load``, ``threshnet.profile --config`` and ``threshnet.train
--config``), plus ``index.csv`` with each config's proxy accuracy, latency, params and
MACs. Default: the Pareto front, into ``<study-dir>/configs/``.

``--onnx`` also writes ``<name>.onnx`` beside each JSON config: the network at batch 1
and the study's latency input size, with fresh untrained weights (for timing on a
deployment target), checked against PyTorch in ONNX Runtime (threshnet.onnx_export).
``python -m studies.export --checkpoint runs/train/<run>/checkpoint.pt [--out FILE]``
exports the trained network of a ``threshnet.train`` run to ONNX instead (default:
``model.onnx`` beside the checkpoint). Both need ``pip install -e '.[onnx]'``.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from studies.load import StudyError, eligible_trials, load_study
from studies.pareto import pareto_front
from threshnet.cli import ArgumentParser, UserError, run_cli
from threshnet.config import ThreshNetConfig
from threshnet.fileio import atomic_write_text
from threshnet.model import build_model
from threshnet.onnx_export import (
    INSTALL_HINT,
    OnnxExportError,
    export_onnx,
    missing_packages,
    save_onnx,
)
from threshnet.training.train import load_trained_model

PROG = "studies.export"
INDEX_COLUMNS = ("file", "trial", "preset", "val_acc", "latency_ms", "params", "macs", "on_front")


def config_file_name(row: pd.Series) -> str:
    suffix = f"-{row['preset']}" if row["preset"] else ""
    return f"trial-{int(row['number']):04d}{suffix}.json"


def _require_onnx(flag: str) -> None:
    missing = missing_packages()
    if missing:
        raise UserError(f"{flag} needs {', '.join(missing)}: {INSTALL_HINT}")


def _write_onnx(model: torch.nn.Module, input_size: int, path: Path, what: str) -> Path:
    """Export ``model`` to ``path`` (checked); UserError (one line) when that fails."""
    try:
        return save_onnx(export_onnx(model, input_size=input_size), path)
    except OnnxExportError as error:
        raise UserError(f"cannot export {what} to ONNX: {error}") from None
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror}") from None


def export_configs(
    study_dir: str | Path, out: str | Path | None, trials: list[int] | None, *, onnx: bool = False
) -> Path:
    """Write the configs of ``trials`` (None: the Pareto front), and with ``onnx`` each
    one's ONNX graph beside it; returns the index path."""
    if onnx:
        _require_onnx("--onnx")
    try:
        study = load_study(study_dir)
    except StudyError as error:
        raise UserError(str(error)) from None
    latency = study.settings["latency"]
    onnx_input_size = int(latency.get("input_size") or study.settings["train"]["input_size"])
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
        if onnx:
            graph = (target / name).with_suffix(".onnx")
            _write_onnx(build_model(config), onnx_input_size, graph, f"trial {int(row['number'])}")
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


def export_checkpoint(checkpoint: str | Path, out: str | Path | None) -> str:
    """Export the trained network of a ``threshnet.train`` checkpoint to ONNX (default:
    ``model.onnx`` beside it); a line saying what was written and what it takes."""
    _require_onnx("--checkpoint")
    trained = load_trained_model(checkpoint)
    path = Path(out) if out is not None else Path(checkpoint).parent / "model.onnx"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {path.parent}: {error.strerror}") from None
    _write_onnx(trained.model, trained.input_size, path, str(checkpoint))
    size = trained.input_size
    scale = ", normalised per channel as in training" if trained.normalize else ""
    return (
        f"exported the network trained for {trained.epoch} epoch(s) to {path}: input "
        f"'image' (1, 3, {size}, {size}) float32 RGB in [0, 1]{scale}, output 'logits'"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", nargs="?", help="a directory written by search.run")
    parser.add_argument(
        "--out",
        help="output directory (<study-dir>/configs); with --checkpoint, the .onnx file "
        "(model.onnx beside the checkpoint)",
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--pareto", action="store_true", help="the Pareto front (default)")
    choice.add_argument("--trial", type=int, nargs="+", metavar="N", help="these trial numbers")
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also write <name>.onnx beside each config (batch 1, the study's latency input "
        "size, untrained weights), checked against PyTorch in ONNX Runtime; needs "
        f"{INSTALL_HINT}",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="instead of a study: export a threshnet.train checkpoint's trained network to "
        "ONNX (--onnx is implied)",
    )
    args = parser.parse_args(argv)
    if args.checkpoint is not None:
        if args.study_dir is not None or args.pareto or args.trial:
            parser.error("--checkpoint exports one trained network: give no study or trials")
        print(export_checkpoint(args.checkpoint, args.out))
        return 0
    if args.study_dir is None:
        parser.error("give a study directory, or --checkpoint FILE")
    index = export_configs(args.study_dir, args.out, args.trial, onnx=args.onnx)
    rows = index.read_text(encoding="utf-8").count("\n") - 1
    graphs = " and their ONNX graphs" if args.onnx else ""
    print(f"exported {rows} config(s){graphs} to {index.parent} (index: {index.name})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
