"""One trial, as a Ray Tune worker runs it: config -> costs -> latency -> proxy training.

Workers are warm: Ray Tune runs trial after trial in the same process, which keeps its
imports, its CUDA context and the study's data on its device (search.worker.warm_data), so a
trial's fixed cost is building its model.

Configs that break the study's cost caps never get here: the searcher records them as
infeasible when it suggests them (search.driver.optuna_bridge). Latency is measured first
(seconds, against the reference network: threshnet.steady_latency), so a config over
``--max-latency-ms`` comes back ``infeasible`` without training.

Everything a trial measures is returned as one flat dict (CSV-ready). A trial never
raises for a failure of its own (exception, CUDA out-of-memory, NaN loss): it returns
``status="failed"`` with the reason, so the study records it and goes on.
"""

from __future__ import annotations

import gc
import itertools
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from search.setup.settings import StudySettings
from search.worker.context import TrialContext
from search.worker.fields import NUMBER_KEY, config_record, node_name
from search.worker.gate import DeviceGate, device_key
from search.worker.latency import latency_device, measure_batch_latency, measure_objective_latency
from search.worker.warm_data import proxy_data
from space import params_to_config
from threshnet.costs import static_costs
from threshnet.latency import device_name
from threshnet.model import build_model
from threshnet.training.proxy import ProxyResult, run_proxy

_trials_in_this_process = itertools.count(1)


def trial_threads(context: TrialContext) -> int:
    """The trial's CPU count as torch's intra-op threads (at least one), set; the count."""
    threads = max(1, int(context.cpus_per_trial))
    torch.set_num_threads(threads)
    return threads


def trial_device() -> torch.device:
    """The GPU Ray assigned to this worker (it sets CUDA_VISIBLE_DEVICES), else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _rung_reports(
    record: dict[str, Any],
    settings: StudySettings,
    started: float,
    report_rung: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """``run_proxy``'s rung arguments: none unless the study uses mo-asha."""
    if report_rung is None or settings.scheduler != "mo-asha":
        return {}
    full = settings.train.epochs

    def at_rung(proxy: ProxyResult) -> None:
        passed = record.get("rung_val_accs", "").split()
        record["rung_val_accs"] = " ".join([*passed, f"{proxy.epochs}:{proxy.val_acc:.6g}"])
        report_rung(
            {
                **record,
                **proxy.to_dict(),
                "status": "stopped",
                "error": f"stopped by mo-asha after {proxy.epochs} of {full} epochs",
                "trial_seconds": time.perf_counter() - started,
            }
        )

    return {"rungs": settings.rungs, "on_rung": at_rung}


def error_line(error: Exception) -> str:
    """What a failed trial records: the error and where it was raised."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return f"CUDA out of memory ({str(error).splitlines()[0][:200]})"
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def evaluate_trial(
    params: dict[str, Any],
    context: TrialContext,
    report_rung: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run one trial; always returns a result dict with a ``status``.

    Under ``--scheduler mo-asha``, ``report_rung`` gets the record after each epoch rung
    short of the full budget, as it would stand if the trial were stopped there (status
    ``stopped``); the scheduler stops a trial by not returning from that call.
    """
    started = time.perf_counter()
    settings = context.settings
    number = int(params.get(NUMBER_KEY, -1))
    device = trial_device()
    threads = trial_threads(context)
    record: dict[str, Any] = {
        "status": "failed",
        "error": "",
        "number": number,
        "node": node_name(),
        "device": str(device),
        "device_name": device_name(device),
        "seed": settings.seed + max(number, 0),
        "worker_trial": next(_trials_in_this_process),
    }
    gate = DeviceGate(device_key(device))
    try:
        config = params_to_config(params, settings.space)
        costs = static_costs(config, settings.train.input_size)
        record.update(config_record(config, costs))
        record.update(flops=costs.flops, activation_mb=costs.activation_mb)
        latency_started = time.perf_counter()  # latency first: it can rule out training
        timed_on = latency_device(context, device)
        model = build_model(config)
        record.update(measure_objective_latency(model, context, timed_on, threads))
        if settings.latency.batch_size:
            record.update(measure_batch_latency(model, context, timed_on, threads))
        del model
        record["latency_seconds"] = time.perf_counter() - latency_started
        too_slow = settings.caps.latency_violation(record["latency_ms"])
        if too_slow is not None:
            record.update(status="infeasible", error=too_slow)
            return record
        setup_started = time.perf_counter()
        data = proxy_data(
            settings, cache_dir=context.cache_dir, entry=context.train_cache, device=device
        )
        record["setup_seconds"] = time.perf_counter() - setup_started
        proxy = run_proxy(
            config,
            data.train,
            data.val,
            settings.train,
            device=device,
            seed=record["seed"],
            normalization=data.normalization,
            around_chunk=gate.shared,
            **_rung_reports(record, settings, started, report_rung),
        )
        record.update(proxy.to_dict())
        record["status"] = "ok"
    except Exception as error:  # recorded, never raised: the study goes on
        record["error"] = error_line(error)
    finally:
        gate.close()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        record["trial_seconds"] = time.perf_counter() - started
    return record
