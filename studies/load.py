"""A study directory as typed pandas data (works while the study is still running).

``studies`` reads what ``search`` writes: ``manifest.json`` and ``trials.csv`` (which the
search rewrites atomically after every trial, so a reader never sees half a file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

MANIFEST_KIND = "threshnet-search-study"

INTEGER_COLUMNS = (
    "number",
    "params",
    "macs",
    "flops",
    "depth",
    "epochs",
    "seed",
    "latency_batch_size",
    "latency_threads",
    "latency_input_size",
    "latency_repeats",
)
FLOAT_COLUMNS = (
    "val_acc",
    "latency_ms",
    "latency_p10_ms",
    "latency_p90_ms",
    "latency_stdev_ms",
    "batch_latency_ms",
    "batch_per_image_ms",
    "activation_mb",
    "val_loss",
    "train_loss",
    "train_acc",
    "train_seconds",
    "images_per_second",
    "trial_seconds",
)
TEXT_COLUMNS = (
    "state",
    "status",
    "preset",
    "device",
    "device_name",
    "latency_device",
    "latency_device_name",
    "latency_dtype",
    "node",
    "error",
    "config_json",
)


class StudyError(ValueError):
    """The directory is not a readable study (one clear line)."""


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
        fixed = {
            "number",
            "datetime_start",
            "datetime_complete",
            *INTEGER_COLUMNS,
            *FLOAT_COLUMNS,
            *TEXT_COLUMNS,
        }
        return [c for c in self.trials.columns if c not in fixed]


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    if not root.is_dir():
        raise StudyError(f"{root} is not a directory")
    if not path.is_file():
        raise StudyError(f"{root} is not a study directory (no manifest.json)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise StudyError(f"cannot read {path}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise StudyError(f"{root} is not a threshnet-search study directory")
    if not isinstance(manifest.get("settings"), dict):
        raise StudyError(f"{path} has no settings")
    return manifest


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        if column in INTEGER_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype("Int64")
        elif column in FLOAT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
        elif column in TEXT_COLUMNS:
            frame[column] = frame[column].fillna("").astype("string")
        elif column.startswith("datetime_"):
            frame[column] = pd.to_datetime(frame[column], errors="raise", utc=True)
        else:  # space parameters: numbers, empty where not sampled
            frame[column] = pd.to_numeric(frame[column], errors="raise")
    return frame


def load_study(root: str | Path) -> Study:
    """Read ``root``; StudyError with one line when it is not a (readable) study."""
    root = Path(root)
    manifest = read_manifest(root)
    path = root / "trials.csv"
    if not path.exists():
        return Study(root, manifest, pd.DataFrame({"number": pd.Series([], dtype="Int64")}))
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        frame = _typed(frame)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StudyError(f"{path} is not a valid trials table: {first_line}") from None
    if "number" not in frame.columns or "state" not in frame.columns:
        raise StudyError(f"{path} is not a valid trials table: missing number/state columns")
    return Study(root, manifest, frame.sort_values("number").reset_index(drop=True))


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
