"""A study directory as typed pandas data (works while the study is still running).

``studies`` reads what ``search`` writes, in the format of :mod:`studies.schema`:
``manifest.json`` and ``trials.csv`` (rewritten atomically after every trial, so a reader
never sees half a file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from studies import schema
from studies.schema import StudyError

__all__ = ["Study", "StudyError", "eligible_trials", "load_study"]


@dataclass(frozen=True)
class Study:
    """A study's manifest and its trials table."""

    root: Path
    manifest: dict[str, Any]
    trials: pd.DataFrame

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.root.name))

    @property
    def settings(self) -> dict[str, Any]:
        return self.manifest["settings"]

    @property
    def proxy_epochs(self) -> int:
        return int(self.settings["train"]["epochs"])

    @property
    def param_columns(self) -> list[str]:
        return schema.param_columns(self.trials.columns)


def load_study(root: str | Path) -> Study:
    """Read ``root``; StudyError with one line when it is not a (readable) study."""
    root = Path(root)
    if not root.is_dir():
        raise StudyError(f"{root} is not a directory")
    manifest = schema.read_manifest(root)
    if manifest is None:
        raise StudyError(f"{root} is not a study directory (no {schema.MANIFEST_FILE})")
    path = root / schema.TRIALS_FILE
    if not path.exists():
        return Study(root, manifest, pd.DataFrame({"number": pd.Series([], dtype="Int64")}))
    return Study(root, manifest, schema.read_trials(path))


def eligible_trials(study: Study) -> pd.DataFrame:
    """Finished, feasible, full-fidelity trials with both objectives measured."""
    trials = study.trials
    if "val_acc" not in trials.columns:
        return trials.iloc[0:0]
    mask = (
        (trials["state"] == "COMPLETE")
        & (trials["status"] == "ok")
        & (trials["epochs"] == study.proxy_epochs)
        & trials["val_acc"].notna()
        & trials["latency_ms"].notna()
    )
    return trials[mask.fillna(False)]
