"""The study directory: its files, the manifest, the Optuna storage and the run lock.

<out>/<name>/
    manifest.json     settings, versions, git revision, seed, devices, runs
    optuna.journal    Optuna storage (open with: optuna-dashboard <that file>)
    optuna.journal.snapshot   its replayed state, to open fast (studies.journal_snapshot)
    trials.csv        one row per ended trial (see studies.schema)
    ray/              Ray Tune's experiment directories, one per run
    fidelity.csv      configs retrained at other budgets and scored (search.fidelity)
    fidelity.json     the fidelity ladder's summary
    fidelity-checkpoints/   retrainings' state after their last epoch, until their row
                      is written (kept for the rerun when one fails or is stopped)
    library.log       Ray's, Optuna's and Python's warnings during runs (not with -v)
    baselines.csv     other families' networks measured on the study's footing
    .run.lock         held by the run in progress
    .fidelity.lock    held by the fidelity check in progress
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from studies import schema
from threshnet.cli import UserError


class StudyDirectory:
    """Paths and file-level operations of one study."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest_path = self.root / schema.MANIFEST_FILE
        self.journal_path = self.root / schema.JOURNAL_FILE
        self.trials_path = self.root / schema.TRIALS_FILE
        self.ray_dir = self.root / "ray"
        self.lock_path = self.root / ".run.lock"
        self.fidelity_lock_path = self.root / ".fidelity.lock"
        self.fidelity_checkpoints = self.root / "fidelity-checkpoints"

    def create(self) -> None:
        """Make the directory; a clear UserError when that is impossible."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise UserError(
                f"cannot write the study directory {self.root}: {error.strerror}"
            ) from None

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the study for this process; refuse when another run holds it."""
        with _exclusive(self.lock_path) as holder:
            if holder is not None:
                raise UserError(
                    f"study {self.root} is already being run by another process (pid {holder}); "
                    "wait for it to finish or stop it, or use another --name"
                )
            yield

    @contextlib.contextmanager
    def fidelity_lock(self) -> Iterator[None]:
        """Hold the study's fidelity check (search.fidelity) for this process."""
        with _exclusive(self.fidelity_lock_path) as holder:
            if holder is not None:
                raise UserError(
                    f"another process (pid {holder}) is running the fidelity check of study "
                    f"{self.root}; wait for it to finish or stop it"
                )
            yield

    def fidelity_checkpoint(self, number: int, budget: str, seed: int) -> Path:
        """Where the fidelity check's retraining of trial ``number`` at ``budget`` (its
        label, e.g. ``6xall``) with ``seed`` keeps its state between epochs."""
        return self.fidelity_checkpoints / f"trial{number}-{budget}-seed{seed}.pt"

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, None for a new study; UserError if it is not ours or unreadable."""
        try:
            manifest = schema.read_manifest(self.root)
        except schema.StudyError as error:
            raise UserError(str(error)) from None
        if manifest is None and self.journal_path.exists():
            raise UserError(f"{self.root} has an Optuna journal but no {schema.MANIFEST_FILE}")
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        schema.write_manifest(self.root, manifest)

    def storage(self, url: str | None = None) -> optuna.storages.BaseStorage:
        """The Optuna storage: by default an append-only journal file in the study
        directory (safe across crashes); or a database URL (sqlite:///..., postgresql://...)."""
        try:
            return schema.open_storage(self.root, url)
        except schema.StudyError as error:
            raise UserError(str(error)) from None

    def load_study(self, storage: optuna.storages.BaseStorage, study_name: str) -> optuna.Study:
        """Create or open the study ``study_name`` (the manifest's; fixed at creation, so
        a moved or copied directory keeps it) in ``storage``: val_acc max, latency_ms min."""
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            directions=["maximize", "minimize"],
            load_if_exists=True,
        )
        if not study.metric_names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(["val_acc", "latency_ms"])
        return study


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[str | None]:
    """Lock ``path`` for this process (its pid written in it); yields None when locked,
    else the pid of the process that holds it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "?"
            return
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield None
    finally:
        os.close(descriptor)
