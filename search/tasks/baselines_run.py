"""Measure a study's baselines (``--baselines``) on Ray, as its trials are measured.

Each baseline (threshnet.baselines) runs as one Ray task sized like a trial, after the
run's trials have ended (so it times its latency on an idle device, as the final latency
pass does): the objective latency by the trials' own protocol (rounds against the
reference network, search.worker.latency.measure_objective_latency), then the same proxy training
on the same data, split and seed rule. The rows go to ``baselines.csv``; baselines are
never Optuna trials, so no sampler sees them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from search.tasks.ray_tasks import each_as_it_ends
from search.worker.context import TrialContext
from search.worker.gate import DeviceGate, device_key
from search.worker.latency import latency_device, measure_objective_latency
from search.worker.trial import error_line, trial_device, trial_threads
from search.worker.warm_data import proxy_data
from studies import schema
from threshnet.baselines import BASELINES, SOURCES, build_baseline
from threshnet.cli import UserError
from threshnet.latency import device_name
from threshnet.training.proxy import run_proxy


def _measure_on_worker(name: str, context: TrialContext) -> dict[str, Any]:
    """Time, then train, one baseline; a row with ``status`` ok or failed."""
    settings = context.settings
    device = trial_device()
    threads = trial_threads(context)
    row: dict[str, Any] = {
        "name": name,
        "source": SOURCES[name],
        "status": "failed",
        "seed": settings.seed,
        "device": str(device),
        "device_name": device_name(device),
        "error": "",
    }
    gate = DeviceGate(device_key(device))
    try:
        num_classes = settings.space.num_classes
        torch.manual_seed(settings.seed)
        model = build_baseline(name, num_classes)
        row["params"] = sum(parameter.numel() for parameter in model.parameters())
        timed = measure_objective_latency(model, context, latency_device(context, device), threads)
        row.update({key: timed.get(key) for key in schema.BASELINE_FIELDS if key in timed})
        data = proxy_data(
            settings, cache_dir=context.cache_dir, entry=context.train_cache, device=device
        )
        torch.manual_seed(settings.seed)
        proxy = run_proxy(
            build_baseline(name, num_classes),
            data.train,
            data.val,
            settings.train,
            device=device,
            seed=settings.seed,
            normalization=data.normalization,
            around_chunk=gate.shared,
        )
        row.update(
            status="ok",
            val_acc=proxy.val_acc,
            epochs=proxy.epochs,
            train_seconds=proxy.train_seconds,
        )
    except Exception as error:  # recorded: the run stands
        row["error"] = " ".join(error_line(error).split())
    finally:
        gate.close()
    row["measured_at"] = dt.datetime.now(dt.UTC).isoformat()
    return row


def missing_baselines(root: Path, wanted: Sequence[str]) -> list[str]:
    """The baselines in ``wanted`` that the study has not measured yet (or that failed)."""
    try:
        done = schema.read_baselines(root)
    except schema.StudyError as error:
        raise UserError(f"{error}; move it away to measure the baselines again") from None
    measured = set() if done is None else set(done.loc[done["status"] == "ok", "name"])
    return [name for name in wanted if name not in measured]


def _record(root: Path, row: dict[str, Any]) -> None:
    """Put ``row`` in ``baselines.csv`` in place of an earlier row of that network; rows
    in the order of threshnet.baselines.BASELINES, whatever order they ended in."""
    earlier = schema.read_baselines(root)
    table = pd.DataFrame([row], columns=list(schema.BASELINE_FIELDS))
    if earlier is not None:
        table = pd.concat([earlier[earlier["name"] != row["name"]], table], ignore_index=True)
    order = table["name"].map({name: index for index, name in enumerate(BASELINES)})
    schema.write_baselines(root, table.iloc[order.argsort(kind="stable")])


def measure_baselines(
    root: Path,
    names: Sequence[str],
    context: TrialContext,
    gpus_per_trial: float,
    max_concurrent: int | None = None,
) -> str:
    """Measure ``names`` as Ray tasks, writing each row into ``baselines.csv`` as it ends
    (a kill keeps the finished ones; Ctrl-C cancels the rest); a line saying what was done."""
    failed: list[str] = []

    def died(name: str, reason: str) -> dict[str, Any]:
        return {
            "name": name,
            "source": SOURCES[name],
            "status": "failed",
            "error": reason,
            "measured_at": dt.datetime.now(dt.UTC).isoformat(),
        }

    def recorded(name: str, row: dict[str, Any]) -> None:
        _record(root, row)
        if row["status"] != "ok":
            failed.append(name)

    each_as_it_ends(
        _measure_on_worker,
        names,
        context,
        num_cpus=context.cpus_per_trial,
        num_gpus=gpus_per_trial,
        limit=max_concurrent,
        on_result=recorded,
        on_death=died,
    )
    path = root / schema.BASELINES_FILE
    return f"baselines: measured {len(names) - len(failed)} of {len(names)}: {path}" + (
        f" (failed: {', '.join(failed)}; see its error column)" if failed else ""
    )
