"""The per-trial table: Optuna storage -> rows -> ``trials.csv`` (format: studies.schema)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from studies import schema


def trial_row(trial: optuna.trial.FrozenTrial, param_columns: list[str]) -> dict[str, Any]:
    """One table row: number, Optuna state, the trial's record, its parameters."""
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    row.update({name: trial.user_attrs.get(name, "") for name in schema.RECORD_FIELDS})
    if trial.state == TrialState.RUNNING:
        row["status"] = "running"
    elif trial.state == TrialState.WAITING:
        row["status"] = "queued"
    row["datetime_start"] = trial.datetime_start.isoformat() if trial.datetime_start else ""
    row["datetime_complete"] = (
        trial.datetime_complete.isoformat() if trial.datetime_complete else ""
    )
    row.update({name: trial.params.get(name, "") for name in param_columns})
    return row


@dataclass(frozen=True)
class TrialsTable:
    """Writes ``trials.csv`` from a study; picklable, so Ray can checkpoint its owner."""

    path: Path
    param_columns: tuple[str, ...]

    def write(self, study: optuna.Study) -> None:
        """Rewrite the whole table (atomically) from the study's current trials."""
        rows = [
            trial_row(trial, list(self.param_columns))
            for trial in study.get_trials(deepcopy=False)
            if trial.state != TrialState.WAITING
        ]
        schema.write_trials(self.path, rows, self.param_columns)
