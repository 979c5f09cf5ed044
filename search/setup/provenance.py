"""Where a study ran: package versions, the git revision, the driver's devices, the manifest."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from search.setup.settings import StudySettings
from studies import schema

PACKAGES = ("threshnet-search", "torch", "torchvision", "optuna", "ray", "numpy")


def versions() -> dict[str, str]:
    """Python's and the main packages' versions ("not installed" where missing)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _git(*args: str) -> str:
    source = Path(__file__).resolve().parent
    return subprocess.run(
        ["git", "-C", str(source), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def git_revision() -> str:
    """The source checkout's commit, marked when it has uncommitted changes."""
    try:
        revision = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return revision + (" (with uncommitted changes)" if dirty else "")


def driver_devices() -> list[str]:
    """The GPUs this process sees, else the CPU."""
    if torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return [f"cpu ({os.cpu_count()} cores)"]


def new_manifest(name: str, settings: StudySettings, storage: str | None) -> dict[str, Any]:
    """The manifest of a new study (``storage``: None for the journal file, or a URL)."""
    return {
        "name": name,
        "study_name": name,  # the Optuna study's name: the study's identity, never changed
        "storage": storage,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "settings": settings.to_dict(),
        "seed": settings.seed,
        "versions": versions(),
        "git_revision": git_revision(),
        "driver_host": platform.node(),
        "driver_devices": driver_devices(),
        "note": "val_acc is proxy validation accuracy on a split of the training set; "
        "the test set is never read during a search",
        # the reference network's time per device kind (search.driver.latency_scale)
        schema.LATENCY_SCALE_KEY: {},
        "runs": [],
    }
