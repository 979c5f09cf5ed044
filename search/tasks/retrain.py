"""Retrain chosen configs of a study at other budgets on Ray workers.

The work behind ``python -m search.fidelity``: each config is trained as its trial was
(same validation split, optimiser, schedule shape) except for the budget's epochs and
training images and the job's seed, as a Ray task sized like the study's trials. Ray
reuses its worker processes for tasks, so a worker keeps the study's data between
configs (search.worker.warm_data); training shares the device's gate as trials do, so a search
running beside it still times latencies alone. Each row reaches the caller as soon as
its config ends, so an interrupted check keeps everything finished; a job with a
checkpoint path keeps its state after each epoch there, so that one interrupted mid-way
continues from its last epoch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search.setup.proxy_data import prepare_data, split_training_data
from search.setup.settings import RunResources, StudySettings
from search.tasks.cluster import ray_session, trial_resources
from search.tasks.ray_tasks import each_as_it_ends
from search.worker.fields import node_name
from search.worker.gate import DeviceGate, device_key
from search.worker.trial import error_line, trial_device
from search.worker.warm_data import proxy_data
from threshnet.cli import UserError
from threshnet.config import ThreshNetConfig
from threshnet.latency import device_name
from threshnet.training.data import CacheEntry, load_split
from threshnet.training.proxy import run_proxy


@dataclass(frozen=True)
class RetrainJob:
    """One config to retrain: its trial number, config (JSON), seed and budget."""

    number: int
    config_json: str
    seed: int
    epochs: int
    images: str  # "proxy" (the study's proxy-training images), "all" or a count
    checkpoint: str | None = None  # where the worker keeps its state after each epoch


def budget_settings(settings: StudySettings, epochs: int, images: str) -> StudySettings:
    """The study's ``settings`` with a budget's epochs and training images."""
    if images == "proxy":
        data = {}
    elif images == "all":
        data = {"max_train_images": None, "train_fraction": 1.0}
    else:
        data = {"max_train_images": int(images), "train_fraction": 1.0}
    train = dataclasses.replace(settings.train, epochs=epochs)
    return dataclasses.replace(settings, train=train, **data)


def budget_images(
    settings: StudySettings, images: Sequence[str], cache_dir: str | None
) -> dict[str, int]:
    """How many training images each of ``images`` ("proxy", "all", a count) stands for in
    the study (a count is a stratified cap, so about that many)."""
    entry, _ = prepare_data(settings, cache_dir)
    data = load_split("train", data_dir=settings.data_dir, cache_dir=cache_dir, entry=entry)
    return {
        name: len(split_training_data(data, budget_settings(settings, 1, name))[0])
        for name in images
    }


@dataclass(frozen=True)
class _WorkerContext:
    settings: StudySettings  # the study's
    cache_dir: str | None
    entry: CacheEntry
    threads: int


def _retrain_on_worker(job: RetrainJob, context: _WorkerContext) -> dict[str, Any]:
    """Train one config; a row with ``status`` ok or failed (never raises)."""
    device = trial_device()
    torch.set_num_threads(context.threads)
    settings = budget_settings(context.settings, job.epochs, job.images)
    row: dict[str, Any] = {
        "number": job.number,
        "status": "failed",
        "epochs": job.epochs,
        "images": job.images,
        "seed": job.seed,
        "device": str(device),
        "device_name": device_name(device),
        "node": node_name(),
        "error": "",
    }
    gate = DeviceGate(device_key(device))
    try:
        data = proxy_data(settings, cache_dir=context.cache_dir, entry=context.entry, device=device)
        result = run_proxy(
            ThreshNetConfig.from_json(job.config_json),
            data.train,
            data.val,
            settings.train,
            device=device,
            seed=job.seed,
            normalization=data.normalization,
            around_chunk=gate.shared,
            checkpoint=None if job.checkpoint is None else Path(job.checkpoint),
        )
        row.update(
            status="ok",
            val_acc=result.val_acc,
            val_loss=result.val_loss,
            train_seconds=result.train_seconds,
            train_images=len(data.train),
        )
    except Exception as error:  # a row says why; the other configs go on
        row["error"] = error_line(error)
    finally:
        gate.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    row["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    return row


def load_settings(settings: dict[str, Any]) -> StudySettings:
    """The study's settings (the manifest's), or a UserError when this version cannot."""
    try:
        return StudySettings.from_dict(settings)
    except (ValueError, TypeError, KeyError) as error:
        raise UserError(
            f"this version cannot retrain the study's trials: its settings do not load "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        ) from None


def retrain_configs(
    settings: StudySettings,
    jobs: Sequence[RetrainJob],
    *,
    resources: RunResources,
    on_row: Callable[[dict[str, Any]], None],
    prog: str,
    on_wait: Callable[[list[RetrainJob]], None] | None = None,
) -> float:
    """Retrain ``jobs`` (each at its budget, in the order given, at most
    ``resources.max_concurrent`` at once) with the study's ``settings``; ``on_row`` gets
    each job's row as it ends, ``on_wait`` the running jobs while none ends (every half
    second); ``prog`` names the command in its stop line. Returns the seconds it took.

    Ctrl-C or SIGTERM cancels the configs still running (KeyboardInterrupt); the rows
    already passed to ``on_row`` stand.
    """

    started = time.perf_counter()
    entry, _ = prepare_data(settings, resources.cache_dir)
    with ray_session(resources, prog):
        cpus, gpus = trial_resources(resources)
        context = _WorkerContext(settings, resources.cache_dir, entry, max(1, int(cpus)))

        def died(job: RetrainJob, reason: str) -> dict[str, Any]:
            return {
                "number": job.number,
                "status": "failed",
                "epochs": job.epochs,
                "images": job.images,
                "seed": job.seed,
                "error": reason,
                "finished_at": dt.datetime.now(dt.UTC).isoformat(),
            }

        each_as_it_ends(
            _retrain_on_worker,
            jobs,
            context,
            num_cpus=cpus,
            num_gpus=gpus,
            limit=resources.max_concurrent,
            on_result=lambda job, row: on_row(row),
            on_death=died,
            on_wait=on_wait,
        )
    return time.perf_counter() - started
