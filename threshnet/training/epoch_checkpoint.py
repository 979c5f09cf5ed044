"""A training's state after its last finished epoch, so that a killed run continues there.

:func:`threshnet.training.proxy.run_proxy` keeps one when given a path (``search.fidelity``
does, for the long budgets that take hours on a CPU). The file names the run it belongs to
(config, settings, seed, device type, data); a file of another run, a damaged one or one
this version cannot read is ignored, and the run starts over and replaces it. Writing is
best-effort: a checkpoint that cannot be written (a full disk; a worker on a node where
the folder above the checkpoint's does not exist, as when it does not share the caller's
file system) costs only the resume, never the training.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from threshnet.fileio import atomic_write, atomic_write_text

CHECKPOINT_KIND = "threshnet-epoch-checkpoint"


@dataclass(frozen=True)
class EpochCheckpoint:
    """The checkpoint file at ``path`` of the run described by ``identity`` (JSON-able)."""

    path: Path
    identity: dict[str, Any]

    @property
    def _identity_text(self) -> str:
        return json.dumps(self.identity, sort_keys=True, default=str)

    def load(self) -> dict[str, Any] | None:
        """The saved state (with ``epoch``), or None: no file, or one not of this run."""
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception as error:  # damaged, cut short, not a checkpoint: start over
            warnings.warn(
                f"ignoring the unreadable checkpoint {self.path} ({type(error).__name__}); "
                "training starts over",
                stacklevel=2,
            )
            return None
        if (
            not isinstance(state, dict)
            or state.get("kind") != CHECKPOINT_KIND
            or state.get("identity") != self._identity_text
        ):
            return None
        return state

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Keep ``state`` as the one after ``epoch`` (atomically: a kill leaves the old)."""
        whole = {"kind": CHECKPOINT_KIND, "identity": self._identity_text, "epoch": epoch, **state}
        try:
            # not its parents: where the folder above is missing (a worker on a node
            # that does not share the caller's file system) nothing is written
            self.path.parent.mkdir(exist_ok=True)
            atomic_write(self.path, lambda temp: torch.save(whole, temp))
            progress = {"epoch": epoch, "train_seconds": state.get("train_seconds")}
            atomic_write_text(progress_path(self.path), json.dumps(progress) + "\n")
        except (OSError, RuntimeError) as error:  # torch.save's writer raises RuntimeError
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
            warnings.warn(f"cannot write the checkpoint {self.path}: {reason}", stacklevel=2)


def progress_path(path: Path) -> Path:
    """The small JSON file beside the checkpoint at ``path``: its epoch and training
    seconds, for a watcher that should not load the whole state."""
    return path.with_suffix(".progress.json")


def read_progress(path: Path) -> dict[str, Any] | None:
    """The progress beside the checkpoint at ``path`` (``epoch``, ``train_seconds``), or
    None when there is none (yet) or it does not parse."""
    try:
        progress = json.loads(progress_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return progress if isinstance(progress, dict) and "epoch" in progress else None


def remove_checkpoint(path: Path) -> None:
    """Delete the checkpoint at ``path`` and its progress file."""
    path.unlink(missing_ok=True)
    progress_path(path).unlink(missing_ok=True)
