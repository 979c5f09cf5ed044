"""The study directory's file format, in one place: ``search`` writes it, ``studies`` reads it.

    manifest.json   {"kind": MANIFEST_KIND, "version": MANIFEST_VERSION, "settings": {...}, ...}
    optuna.journal  the Optuna storage (or the database URL in the manifest's "storage"):
                    the source of truth; each trial's record is ONE user attribute,
                    RECORD_ATTR, a dict of RECORD_FIELDS (one storage write per trial;
                    version 2 stored each field as its own attribute, still read)
    trials.csv      number, state, the RECORD_FIELDS, datetime_start, datetime_complete,
                    then one column per search-space parameter (empty where not sampled);
                    a table of the storage: written whole when a run starts and ends (and
                    rebuilt whenever it is missing), one row appended per ended trial

Every field has one type here; the writer writes what a trial recorded, the reader gives
back the same values with these types. Both files are written atomically (temporary file,
then rename), so a reader never sees half a file; a row is appended with one write.
Nothing here imports Ray.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from studies.journal_snapshot import SnapshotJournalFileBackend
from threshnet.fileio import atomic_write_text

MANIFEST_KIND = "threshnet-search-study"
# 2: "study_name", the study's identity in the Optuna storage; 3: records in RECORD_ATTR
MANIFEST_VERSION = 4
MANIFEST_FILE = "manifest.json"
TRIALS_FILE = "trials.csv"
JOURNAL_FILE = "optuna.journal"

RECORD_ATTR = "record"  # the user attribute holding a trial's record
INTERRUPTED = "interrupted"  # status of a trial a stopped run left unfinished

# What a trial records (see search.worker.trial.evaluate_trial), in table order, with its type.
RECORD_FIELDS: dict[str, type] = {
    # ok, failed, infeasible, interrupted ("running" in the table), or stopped (at an
    # epoch rung by --scheduler mo-asha: "epochs" and "val_acc" are the rung's)
    "status": str,
    "preset": str,
    "val_acc": float,
    "latency_ms": float,
    "latency_p10_ms": float,
    "latency_p90_ms": float,
    "latency_stdev_ms": float,
    "latency_ref_ms": float,  # the reference network (ThreshNet28), same rounds and rule
    "latency_ratio": float,  # median over the rounds of (fastest pass / reference's)
    "latency_cv": float,  # coefficient of variation of the rounds' ratios
    "latency_rounds": int,
    # 1 when the median ratio's relative standard error (threshnet.steady_latency
    # .ratio_standard_error of latency_cv and latency_rounds) stayed above STEADY_SE
    "latency_unsteady": int,
    # latency_ms = latency_ratio x latency_scale_ms, the study's reference time for the
    # trial's device kind (threshnet.latency_scale); the trial's own ms: latency_raw_ms.
    # Studies made before the scale have none of the three: latency_ms is raw.
    "latency_raw_ms": float,
    "latency_scale_ms": float,
    "latency_kind": str,
    "latency_clock": str,  # what a pass's time was: cpu (one thread's CPU time) or wall
    "latency_cpu_ms": float,  # on a CPU, the same statistic of the passes' CPU time
    "latency_cpu_ratio": float,  # ... and its ratio to the reference's
    # The machine while timing (threshnet.machine_load): 1-minute load average, share of
    # the window a task waited for a CPU, share stolen by other VMs, 1 when still
    # oversubscribed after the retries, and the attempts made
    "latency_load": float,
    "latency_cpu_pressure": float,
    "latency_steal": float,
    "latency_oversubscribed": int,
    "latency_attempts": int,
    # seconds the timing waited for the device's gate: for other trials' (or another
    # program's) computing on the device to pause (search.worker.gate)
    "latency_gate_wait_s": float,
    "latency_warmup_passes": int,  # of both networks; on a GPU, until the passes held still
    # On a GPU (with NVML): its SM clock, temperature and power draw around the timing
    **{
        f"latency_gpu_{what}_{when}": float
        for what in ("clock_mhz", "temperature_c", "power_w")
        for when in ("before", "after")
    },
    "batch_latency_ms": float,
    "batch_per_image_ms": float,
    "latency_batch_size": int,
    "params": int,
    "macs": int,
    "flops": int,
    "activation_mb": float,
    "depth": int,
    "val_loss": float,
    "train_loss": float,
    "train_acc": float,
    "epochs": int,
    "rung_val_accs": str,  # mo-asha: "epochs:val_acc" at each rung passed, space-separated
    "train_seconds": float,
    "eval_seconds": float,
    "images_per_second": float,
    "trial_seconds": float,
    "setup_seconds": float,  # in the worker, getting the data (held by a warm worker)
    "latency_seconds": float,  # in the worker, measuring latency
    "worker_trial": int,  # 1 for a worker process's first trial, 2 for its second, ...
    "seed": int,
    "device": str,
    "device_name": str,
    "latency_device": str,
    "latency_device_name": str,
    "latency_dtype": str,
    "latency_threads": int,
    "latency_input_size": int,
    "latency_repeats": int,
    "node": str,
    "error": str,
    "config_json": str,
}
# The manifest's map of the study's latency scale: device kind -> reference time (a
# threshnet.latency_scale.ReferenceTime as a dict; search.driver.latency_scale)
LATENCY_SCALE_KEY = "latency_scale"
# remeasured.csv: the final latency pass (studies.remeasure), one row per re-timed trial.
# A re-timed figure replaces the search's only when the relative standard error of its
# median ratio is at most threshnet.steady_latency.STEADY_SE (the trials' own "unsteady"
# limit; BENCHMARKS.md, "Latency stability", has the figures' spread it bounds).
REMEASURED_FILE = "remeasured.csv"
REMEASURED_FIELDS: dict[str, type] = {
    "number": int,
    "latency_ms": float,
    "latency_ref_ms": float,
    "latency_ratio": float,
    "latency_cv": float,
    "rounds": int,
    # "re-measured": latency_ms is this pass's (ratio x the study's reference time);
    # "search": the pass could not time it steadily and latency_ms is the search's own
    "source": str,
    "flagged": int,  # 1 with source "search": unsteady in every attempt
    "attempts": int,  # whole re-timings of this trial (more after unsteady ones)
    "latency_raw_ms": float,  # this pass's own ms (median of the rounds' fastest)
    "latency_scale_ms": float,  # the reference time the figure is scaled by (0: raw)
    "load": str,  # the machine while timing (threshnet.machine_load)
    "device": str,
    "device_name": str,
    "threads": int,  # 0 on a GPU
    "measured_at": str,  # ISO 8601, UTC
}
# fidelity.csv: the proxy-fidelity check (search.fidelity), one row per config and rung
# (a training budget, or a zero-cost score) and seed, appended as each ends.
FIDELITY_FILE = "fidelity.csv"
FIDELITY_JSON = "fidelity.json"  # the ladder's summary, written after each check
FIDELITY_FIELDS: dict[str, type] = {
    "number": int,  # the trial whose config was retrained (or scored)
    "preset": str,
    "selected_as": str,  # front, preset, stratified or random
    "status": str,  # ok or failed
    "rung": str,  # EPOCHSxIMAGES (images: proxy, all or a count), or a zero-cost score's name
    "kind": str,  # trained or zero-cost
    "proxy_epochs": int,
    "proxy_val_acc": float,  # the trial's own (search) validation accuracy
    "epochs": int,  # trained: the rung's epochs; zero-cost: 0
    "train_images": int,  # trained: the images of one epoch
    "val_acc": float,  # trained: on the same validation split, after ``epochs``
    "val_loss": float,
    "score": float,  # zero-cost: the score (higher ranks higher)
    "train_seconds": float,  # what the rung cost: training, or computing the score
    "seed": int,
    "device": str,
    "device_name": str,
    "node": str,
    "error": str,
    "finished_at": str,  # ISO 8601, UTC
}
# Written before rungs: one longer budget on the proxy's images, a row per config.
FIDELITY_FIELDS_V1 = tuple(
    name for name in FIDELITY_FIELDS if name not in ("rung", "kind", "train_images", "score")
)
# baselines.csv: reference networks of other families (--baselines), trained and timed
# like the trials; never Optuna trials. One row per network, the latest measurement.
BASELINES_FILE = "baselines.csv"
BASELINE_FIELDS: dict[str, type] = {
    "name": str,  # threshnet.baselines.BASELINES
    "source": str,  # where the network comes from (builder preset, torchvision, timm)
    "status": str,  # ok or failed
    "val_acc": float,
    "latency_ms": float,
    "latency_ref_ms": float,
    "latency_ratio": float,
    "latency_cv": float,
    "latency_p10_ms": float,
    "latency_p90_ms": float,
    "params": int,
    "epochs": int,
    "train_seconds": float,
    "seed": int,
    "device": str,
    "device_name": str,
    "error": str,
    "measured_at": str,  # ISO 8601, UTC
}
LEADING_COLUMNS: dict[str, type] = {"number": int, "state": str}  # Optuna's number and state
DATETIME_COLUMNS = ("datetime_start", "datetime_complete")  # ISO 8601, UTC offset included

_PANDAS_TYPES = {int: "Int64", float: "float64", str: "string"}


class StudyError(ValueError):
    """A directory or file that is not a readable study (the message is one line)."""


def table_columns(param_columns: Sequence[str]) -> list[str]:
    """The columns of ``trials.csv`` for a space with ``param_columns``."""
    return [*LEADING_COLUMNS, *RECORD_FIELDS, *DATETIME_COLUMNS, *param_columns]


def param_columns(columns: Iterable[str]) -> list[str]:
    """The search-space parameter columns among ``columns`` (all that are not fixed)."""
    fixed = {*LEADING_COLUMNS, *RECORD_FIELDS, *DATETIME_COLUMNS}
    return [column for column in columns if column not in fixed]


def open_storage(root: Path, url: str | None) -> optuna.storages.BaseStorage:
    """The Optuna storage of the study in ``root``: its journal file, or the database
    ``url`` (sqlite:///..., postgresql://...). StudyError (one line) when it cannot open."""
    if url is None:
        return JournalStorage(SnapshotJournalFileBackend(str(root / JOURNAL_FILE)))
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # SQLAlchemy raises many types for a bad URL
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StudyError(f"cannot open the Optuna storage {url!r}: {message}") from None


def trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """What ``trial`` recorded (empty while it runs): its RECORD_ATTR, or the separate
    user attributes a version-2 study stored."""
    record = trial.user_attrs.get(RECORD_ATTR)
    if isinstance(record, dict):
        return record
    return {name: trial.user_attrs[name] for name in RECORD_FIELDS if name in trial.user_attrs}


def trial_status(trial: optuna.trial.FrozenTrial) -> str | None:
    """The ``status`` ``trial`` recorded, if any."""
    return trial_record(trial).get("status")


def trial_row(trial: optuna.trial.FrozenTrial, param_columns: Sequence[str]) -> dict[str, Any]:
    """One table row: number, Optuna state, the trial's record, its parameters."""
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    record = trial_record(trial)
    row.update({name: record.get(name, "") for name in RECORD_FIELDS})
    if trial.state == TrialState.RUNNING:
        row["status"] = "running"
    row["datetime_start"] = trial.datetime_start.isoformat() if trial.datetime_start else ""
    row["datetime_complete"] = (
        trial.datetime_complete.isoformat() if trial.datetime_complete else ""
    )
    row.update({name: trial.params.get(name, "") for name in param_columns})
    return row


def write_trials_of(study: optuna.Study, path: Path, param_columns: Sequence[str]) -> None:
    """Write ``trials.csv`` from the study's trials (queued ones are not rows yet)."""
    rows = [
        trial_row(trial, param_columns)
        for trial in study.get_trials(deepcopy=False)
        if trial.state != TrialState.WAITING
    ]
    write_trials(path, rows, param_columns)


def _csv_text(
    rows: Iterable[Mapping[str, Any]], param_columns: Sequence[str], *, header: bool
) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=table_columns(param_columns), restval="", lineterminator="\n"
    )
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_trials(
    path: Path, rows: Iterable[Mapping[str, Any]], param_columns: Sequence[str]
) -> None:
    """Write ``trials.csv`` atomically; missing values are written as empty cells."""
    atomic_write_text(path, _csv_text(rows, param_columns, header=True))


def append_trial(path: Path, trial: optuna.trial.FrozenTrial, param_columns: Sequence[str]) -> None:
    """Append ``trial``'s row to ``trials.csv`` (written whole, with its header, when the
    run started; a new table if it is gone) in one write, flushed to disk: constant cost
    however long the study."""
    row = trial_row(trial, param_columns)
    if not path.exists():
        write_trials(path, [row], param_columns)
        return
    _append_text(path, _csv_text([row], param_columns, header=False))


def _append_text(path: Path, data: str) -> None:
    """Append ``data`` to ``path`` in one write, flushed to disk."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        encoded = data.encode("utf-8")
        written = os.write(descriptor, encoded)
        if written != len(encoded):
            raise OSError(errno.ENOSPC, "short write (no space left?)", str(path))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_trials(path: Path) -> pd.DataFrame:
    """``trials.csv`` as a typed frame (empty cells are missing values), sorted by number.

    A last row without its line end (an append that a kill or a full disk cut short, or
    one still being written) is left out; the next run rewrites the table whole.
    """
    try:
        frame = _typed(_read_complete_rows(path), {**LEADING_COLUMNS, **RECORD_FIELDS})
    except (OSError, ValueError, pd.errors.ParserError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StudyError(f"{path} is not a valid trials table: {first_line}") from None
    missing = [column for column in LEADING_COLUMNS if column not in frame.columns]
    if missing:
        raise StudyError(f"{path} is not a valid trials table: no {'/'.join(missing)} column")
    return frame.sort_values("number").reset_index(drop=True)


def _read_complete_rows(path: Path) -> pd.DataFrame:
    """A CSV table as text columns, without a last row that has no line end."""
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    return pd.read_csv(io.StringIO(complete), dtype=str, keep_default_na=False, na_values=[""])


def _typed(frame: pd.DataFrame, types: Mapping[str, type]) -> pd.DataFrame:
    """``frame`` (read as text) with each column of ``types`` in its type, the datetime
    columns as UTC datetimes and any other column as numbers."""
    for column in frame.columns:
        if column in types:
            kind = types[column]
            if kind is str:
                frame[column] = frame[column].fillna("").astype("string")
            else:
                numbers = pd.to_numeric(frame[column], errors="raise")
                frame[column] = numbers.astype(_PANDAS_TYPES[kind])
        elif column in DATETIME_COLUMNS:
            frame[column] = pd.to_datetime(frame[column], errors="raise", utc=True)
        else:  # space parameters: numbers, empty where not sampled
            frame[column] = pd.to_numeric(frame[column], errors="raise")
    return frame


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of the study in ``root``, migrated to MANIFEST_VERSION; None if none.

    Raises StudyError when it is unreadable, not a study's, of a newer version, or has no
    settings.
    """
    path = root / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise StudyError(f"cannot read {path}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise StudyError(f"{root} is not a threshnet-search study directory")
    version = manifest.get("version")
    if version not in _MIGRATIONS and version != MANIFEST_VERSION:
        newer = isinstance(version, int) and version > MANIFEST_VERSION
        raise StudyError(
            f"{path} has version {version!r}; this toolkit reads versions 1 to "
            f"{MANIFEST_VERSION}" + (" (a newer threshnet-search wrote it)" if newer else "")
        )
    while manifest["version"] != MANIFEST_VERSION:
        manifest = _MIGRATIONS[manifest["version"]](manifest)
    if not isinstance(manifest.get("settings"), dict):
        raise StudyError(f"{path} has no settings")
    if not isinstance(manifest.get("study_name"), str) or not manifest["study_name"]:
        raise StudyError(f"{path} has no study name")
    return manifest


# Settings an earlier version recorded that no longer exist (they had no effect).
REMOVED_SETTINGS = (("latency", "cpu_threads"),)


def _from_version_1(manifest: dict[str, Any]) -> dict[str, Any]:
    """Version 1 named the Optuna study after the directory it was created in."""
    settings = manifest.get("settings")
    if isinstance(settings, dict):
        for section, name in REMOVED_SETTINGS:
            if isinstance(settings.get(section), dict):
                settings[section].pop(name, None)
    return {**manifest, "version": 2, "study_name": manifest.get("name")}


def _from_version_2(manifest: dict[str, Any]) -> dict[str, Any]:
    """Version 2 stored each record field as its own user attribute (trial_record reads
    both) and timed latency in one run of repeats: its latency protocol says so with
    ``rounds: 0``, so a resumed study goes on measuring the way its trials were measured."""
    settings = manifest.get("settings")
    if isinstance(settings, dict) and isinstance(settings.get("latency"), dict):
        settings["latency"].setdefault("rounds", 0)
    return {**manifest, "version": 3}


def _from_version_3(manifest: dict[str, Any]) -> dict[str, Any]:
    """Version 3 timed every pass by wall time and kept latencies in raw milliseconds (no
    ``latency_scale``): its latency protocol says so with ``clock: wall``."""
    settings = manifest.get("settings")
    if isinstance(settings, dict) and isinstance(settings.get("latency"), dict):
        settings["latency"].setdefault("clock", "wall")
    return {**manifest, "version": 4}


_MIGRATIONS = {
    1: _from_version_1,
    2: _from_version_2,
    3: _from_version_3,
}  # version -> its manifest in the next version's format


def write_manifest(root: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest`` atomically, stamped with the kind and version."""
    body = {key: value for key, value in manifest.items() if key not in ("kind", "version")}
    stamped = {"kind": MANIFEST_KIND, "version": MANIFEST_VERSION, **body}
    atomic_write_text(root / MANIFEST_FILE, json.dumps(stamped, indent=2) + "\n")


def write_remeasured(root: Path, table: pd.DataFrame) -> Path:
    """Write ``remeasured.csv`` (REMEASURED_FIELDS) atomically; returns its path."""
    text = table.to_csv(index=False, columns=list(REMEASURED_FIELDS), lineterminator="\n")
    return atomic_write_text(root / REMEASURED_FILE, text)


def read_remeasured(root: Path) -> pd.DataFrame | None:
    """``remeasured.csv`` as a typed frame, or None when the study has none."""
    return _read_side_table(
        root / REMEASURED_FILE, REMEASURED_FIELDS, "re-measurement", _remeasured_before_source
    )


def _remeasured_before_source(frame: pd.DataFrame) -> pd.DataFrame:
    """A remeasured.csv written before its "source" column: every row was re-measured, in
    raw milliseconds."""
    if "source" in frame.columns or "latency_ms" not in frame.columns:
        return frame
    return frame.assign(
        source="re-measured",
        flagged=0,
        attempts=1,
        latency_raw_ms=frame["latency_ms"],
        latency_scale_ms=0.0,
        load="",
    )


def _read_side_table(
    path: Path,
    fields: Mapping[str, type],
    what: str,
    upgrade: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.DataFrame | None:
    """A table of ``fields`` beside the trials (a last row cut short is left out), typed;
    None when there is none. ``upgrade`` brings an older table's columns up to date."""
    if not path.exists():
        return None
    try:
        frame = _read_complete_rows(path)
        if upgrade is not None:
            frame = upgrade(frame)
        missing = [name for name in fields if name not in frame.columns]
        if missing:
            raise ValueError(f"no {'/'.join(missing)} column")
        frame = _typed(frame[list(fields)].copy(), fields)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StudyError(f"{path} is not a valid {what} table: {first_line}") from None
    return frame


def append_fidelity(root: Path, row: Mapping[str, Any]) -> Path:
    """Append one row (FIDELITY_FIELDS) to ``fidelity.csv``, starting the table with its
    header when there is none; returns its path."""
    path = root / FIDELITY_FILE
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(FIDELITY_FIELDS), restval="", lineterminator="\n"
    )
    if not path.exists():
        writer.writeheader()
        writer.writerow(row)
        return atomic_write_text(path, buffer.getvalue())
    writer.writerow(row)
    _append_text(path, buffer.getvalue())
    return path


def read_fidelity(root: Path) -> pd.DataFrame | None:
    """``fidelity.csv`` as a typed frame (a row cut short is left out), or None. A table
    from before rungs reads as trained rungs ``<epochs>xproxy``."""
    path = root / FIDELITY_FILE
    if path.exists() and "rung" not in path.read_text(encoding="utf-8").split("\n", 1)[0]:
        older = _read_side_table(
            path, {name: FIDELITY_FIELDS[name] for name in FIDELITY_FIELDS_V1}, "fidelity"
        )
        assert older is not None
        older["rung"] = older["epochs"].astype("string") + "xproxy"
        older["kind"] = "trained"
        older["train_images"] = pd.NA
        older["score"] = float("nan")
        return _typed(older[list(FIDELITY_FIELDS)].copy(), FIDELITY_FIELDS)
    return _read_side_table(path, FIDELITY_FIELDS, "fidelity")


def drop_cut_fidelity_row(root: Path) -> None:
    """Rewrite ``fidelity.csv`` without a last row that a kill or a full disk cut short,
    so that the next appended row starts on its own line."""
    path = root / FIDELITY_FILE
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        atomic_write_text(path, text[: text.rfind("\n") + 1])


def write_baselines(root: Path, table: pd.DataFrame) -> Path:
    """Write ``baselines.csv`` (BASELINE_FIELDS) atomically; returns its path."""
    text = table.to_csv(index=False, columns=list(BASELINE_FIELDS), lineterminator="\n")
    return atomic_write_text(root / BASELINES_FILE, text)


def read_baselines(root: Path) -> pd.DataFrame | None:
    """``baselines.csv`` as a typed frame, or None when the study has none."""
    return _read_side_table(root / BASELINES_FILE, BASELINE_FIELDS, "baselines")
