"""The per-trial table ``trials.csv``, kept from the Optuna storage (studies.schema)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from studies import schema


@dataclass(frozen=True)
class TrialsTable:
    """Writes ``trials.csv`` from a study; picklable, so Ray can checkpoint its owner."""

    path: Path
    param_columns: tuple[str, ...]

    def write(self, study: optuna.Study) -> None:
        """Rewrite the whole table (atomically) from the study's current trials: when a
        run starts and ends."""
        schema.write_trials_of(study, self.path, self.param_columns)

    def append(self, trial: optuna.trial.FrozenTrial) -> None:
        """Add the row of a trial that just ended (one write, however long the study)."""
        schema.append_trial(self.path, trial, self.param_columns)
