"""A study directory as typed pandas data (works while the study is still running).

``studies`` reads what ``search`` writes, in the format of :mod:`studies.schema`:
``manifest.json`` and ``trials.csv`` (written atomically when a run starts and ends, a
row appended as each trial ends; a reader skips a row still being appended).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from studies import schema
from studies.schema import StudyError
from threshnet.steady_latency import ratio_standard_error

__all__ = ["Study", "StudyError", "eligible_trials", "load_study"]


@dataclass(frozen=True)
class Study:
    """A study's manifest and its trials table."""

    root: Path
    manifest: dict[str, Any]
    trials: pd.DataFrame
    remeasured: pd.DataFrame | None = None  # the final latency pass, if it ran
    fidelity: pd.DataFrame | None = None  # configs retrained longer (studies.fidelity)
    baselines: pd.DataFrame | None = None  # other families' networks (--baselines)

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
    extras = {
        "remeasured": schema.read_remeasured(root),
        "fidelity": schema.read_fidelity(root),
        "baselines": schema.read_baselines(root),
    }
    if not path.exists() and not _rebuild_trials(root, manifest, path):
        empty = pd.DataFrame({"number": pd.Series([], dtype="Int64")})
        return Study(root, manifest, empty, **extras)
    return Study(root, manifest, schema.read_trials(path), **extras)


def _rebuild_trials(root: Path, manifest: dict[str, Any], path: Path) -> bool:
    """Write a missing ``trials.csv`` from the study's Optuna storage, as the search does
    at every start; False when the storage has no such study yet."""
    url = manifest.get("storage")
    if url is None and not (root / schema.JOURNAL_FILE).exists():
        return False
    try:
        storage = schema.open_storage(root, url)
        study = optuna.load_study(study_name=manifest["study_name"], storage=storage)
    except KeyError:  # no study of that name in the storage yet
        return False
    except StudyError:
        raise
    except ValueError as error:  # a journal line that is not JSON
        raise StudyError(f"cannot read the Optuna storage of {root}: {error}") from None
    trials = study.get_trials(deepcopy=False)
    columns = list(dict.fromkeys(name for trial in trials for name in trial.params))
    try:
        schema.write_trials_of(study, path, columns)  # the parameters the trials have
    except OSError as error:
        raise StudyError(
            f"{path} is missing and cannot be rebuilt from the storage: {error.strerror}"
        ) from None
    return True


def eligible_trials(study: Study, *, search_latencies: bool = False) -> pd.DataFrame:
    """Finished, feasible, full-fidelity trials with both objectives measured.

    Where the final latency pass re-timed a trial steadily (studies.remeasure),
    ``latency_ms`` is the re-measured figure (``latency_search_ms`` keeps the search's
    own, and ``latency_remeasured`` says which), unless ``search_latencies``; where it
    could not, the search's figure stays and ``latency_flagged`` is set.
    """
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
    eligible = trials[mask.fillna(False)].copy()
    eligible["latency_search_ms"] = eligible["latency_ms"]
    eligible["latency_remeasured"] = False
    eligible["latency_flagged"] = False
    # where each latency figure comes from, with the CV of its rounds' ratios, their count
    # and the relative standard error of the median ratio they give
    eligible["latency_source"] = "search"
    for name, column in (
        ("latency_figure_cv", "latency_cv"),
        ("latency_figure_rounds", "latency_rounds"),
    ):
        eligible[name] = eligible[column] if column in eligible.columns else float("nan")
    eligible["latency_figure_se"] = _standard_errors(eligible)
    if study.remeasured is None or search_latencies:
        return eligible
    passed = study.remeasured.set_index("number")
    replaced = passed[passed["source"] == "re-measured"]
    hit = eligible["number"].isin(replaced.index)
    numbers = eligible.loc[hit, "number"]
    eligible.loc[hit, "latency_ms"] = numbers.map(replaced["latency_ms"]).astype(float)
    eligible.loc[hit, "latency_figure_cv"] = numbers.map(replaced["latency_cv"]).astype(float)
    eligible.loc[hit, "latency_figure_rounds"] = numbers.map(replaced["rounds"]).astype(float)
    eligible.loc[hit, "latency_figure_se"] = _standard_errors(eligible.loc[hit])
    eligible.loc[hit, "latency_remeasured"] = True
    eligible.loc[hit, "latency_source"] = "re-measured"
    flagged = eligible["number"].isin(passed.index[passed["flagged"].astype(bool)])
    eligible.loc[flagged, "latency_flagged"] = True
    eligible.loc[flagged, "latency_source"] = "search (re-timing unsteady)"
    return eligible


def _standard_errors(trials: pd.DataFrame) -> pd.Series:
    """The relative standard error of each row's median latency ratio, from its figure's
    CV and rounds (threshnet.steady_latency.ratio_standard_error; NaN where unknown)."""
    return pd.Series(
        [
            ratio_standard_error(cv, int(rounds)) if pd.notna(cv) and pd.notna(rounds) else np.nan
            for cv, rounds in zip(
                trials["latency_figure_cv"], trials["latency_figure_rounds"], strict=True
            )
        ],
        index=trials.index,
        dtype=float,
    )
