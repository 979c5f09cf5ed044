"""The per-trial table: Optuna storage -> rows -> ``trials.csv`` (rewritten atomically)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from threshnet.fileio import atomic_write_text

# Fields a trial reports (see search.trial.evaluate_trial), in table order.
RECORD_FIELDS = (
    "status",
    "preset",
    "val_acc",
    "latency_ms",
    "latency_p10_ms",
    "latency_p90_ms",
    "latency_stdev_ms",
    "batch_latency_ms",
    "batch_per_image_ms",
    "latency_batch_size",
    "params",
    "macs",
    "flops",
    "activation_mb",
    "depth",
    "val_loss",
    "train_loss",
    "train_acc",
    "epochs",
    "train_seconds",
    "images_per_second",
    "trial_seconds",
    "seed",
    "device",
    "device_name",
    "latency_device",
    "latency_device_name",
    "latency_dtype",
    "latency_threads",
    "latency_input_size",
    "latency_repeats",
    "node",
    "error",
    "config_json",
)
INTERRUPTED = "interrupted"


def trial_row(trial: optuna.trial.FrozenTrial, param_columns: list[str]) -> dict[str, Any]:
    """One table row: number, Optuna state, the trial's record, its parameters."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    for name in RECORD_FIELDS:
        row[name] = attrs.get(name, "")
    if trial.state == optuna.trial.TrialState.RUNNING:
        row["status"] = "running"
    elif trial.state == optuna.trial.TrialState.WAITING:
        row["status"] = "queued"
    row["datetime_start"] = trial.datetime_start.isoformat() if trial.datetime_start else ""
    row["datetime_complete"] = (
        trial.datetime_complete.isoformat() if trial.datetime_complete else ""
    )
    for name in param_columns:
        row[name] = trial.params.get(name, "")
    return row


@dataclass(frozen=True)
class TrialsTable:
    """Writes ``trials.csv`` from a study; picklable, so Ray can checkpoint its owner."""

    path: Path
    param_columns: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return [
            "number",
            "state",
            *RECORD_FIELDS,
            "datetime_start",
            "datetime_complete",
            *self.param_columns,
        ]

    def write(self, study: optuna.Study) -> None:
        """Rewrite the whole table (atomically) from the study's current trials."""
        rows = [
            trial_row(trial, list(self.param_columns))
            for trial in study.get_trials(deepcopy=False)
            if trial.state != optuna.trial.TrialState.WAITING
        ]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buffer.getvalue())
