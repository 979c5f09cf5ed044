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

import contextlib
import functools
import gc
import itertools
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from search.setup.settings import StudySettings
from search.worker.fields import NUMBER_KEY, config_record, node_name
from search.worker.gate import DeviceGate, device_key
from search.worker.warm_data import proxy_data
from space import params_to_config
from threshnet.costs import static_costs
from threshnet.latency import LatencyResult, LatencySettings, device_name, measure_latency
from threshnet.model import build_model
from threshnet.steady_latency import measure_steady_latency, reference_config, timed_network
from threshnet.training.data import CacheEntry
from threshnet.training.proxy import ProxyResult, run_proxy

if TYPE_CHECKING:
    from threshnet.steady_latency import Network

_trials_in_this_process = itertools.count(1)


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its parameters (sent to the workers)."""

    settings: StudySettings
    cache_dir: str | None
    train_cache: CacheEntry | None
    cpus_per_trial: float


def trial_device() -> torch.device:
    """The GPU Ray assigned to this worker (it sets CUDA_VISIBLE_DEVICES), else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def latency_device(context: TrialContext, trial_device: torch.device) -> torch.device:
    wanted = context.settings.latency.device
    if wanted == "trial":
        return trial_device
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--latency-device cuda, but this trial's worker has no GPU")
    return torch.device(wanted)


def _latency_settings(
    context: TrialContext, device: torch.device, threads: int, batch: int, repeats: int
) -> LatencySettings:
    return LatencySettings(
        batch_size=batch,
        warmup=context.settings.latency.warmup,
        repeats=repeats,
        threads=threads if device.type == "cpu" else None,
    )


def measure_objective_latency(
    model: nn.Module, context: TrialContext, device: torch.device, threads: int
) -> dict[str, Any]:
    """The objective: batch-1 latency in rounds interleaved with the reference network,
    both run by the study's latency backend (the record's latency fields)."""
    protocol = context.settings.latency
    settings = _latency_settings(context, device, threads, 1, protocol.repeats_per_round)
    input_size = protocol.input_size or context.settings.train.input_size
    if protocol.rounds == 0:  # a study made before rounds: measure as its trials were
        single = _measure_one_run(model, device, input_size, settings)
        return {**_latency_fields(single), "latency_ms": single.median_ms}
    # exported (onnxruntime) before the gate is taken: it takes seconds
    candidate = timed_network(
        model, protocol.backend, input_size=input_size, device=device, threads=threads
    )
    if protocol.backend == "eager":
        reference = build_model(reference_config())
    else:
        reference = _onnx_reference(input_size, device, threads)
    with _alone_on(device):
        steady = measure_steady_latency(
            candidate,
            reference,
            input_size=input_size,
            device=device,
            settings=settings,
            rounds=protocol.rounds,
        )
    return {
        **_latency_fields(steady.candidate),
        "latency_ms": steady.latency_ms,
        "latency_ref_ms": steady.reference_ms,
        "latency_ratio": steady.ratio,
        "latency_cv": steady.ratio_cv,
        "latency_rounds": steady.rounds,
        "latency_unsteady": int(steady.unsteady),
    }


@functools.cache
def _onnx_reference(input_size: int, device: torch.device, threads: int) -> Network:
    """The reference network's ONNX Runtime session, exported once by a warm worker."""
    return timed_network(
        build_model(reference_config()),
        "onnxruntime",
        input_size=input_size,
        device=device,
        threads=threads,
    )


def _latency_fields(result: LatencyResult) -> dict[str, Any]:
    """The record fields of a latency result's spread and of what it was measured on."""
    return {
        "latency_p10_ms": result.p10_ms,
        "latency_p90_ms": result.p90_ms,
        "latency_stdev_ms": result.stdev_ms,
        "latency_repeats": result.repeats,
        "latency_input_size": result.input_size,
        "latency_device": result.device,
        "latency_device_name": result.device_name,
        "latency_dtype": result.dtype,
        "latency_threads": result.threads,
    }


def _measure_one_run(
    model: nn.Module, device: torch.device, input_size: int, settings: LatencySettings
) -> LatencyResult:
    """One run of repeats of ``model`` with its device to itself."""
    with _alone_on(device):
        return measure_latency(model, input_size=input_size, device=device, settings=settings)


@contextlib.contextmanager
def _alone_on(device: torch.device) -> Iterator[None]:
    """Hold ``device``'s gate exclusively: no other trial computes on it meanwhile."""
    gate = DeviceGate(device_key(device))
    try:
        with gate.exclusive():
            yield
    finally:
        gate.close()


def measure_batch_latency(
    model: nn.Module, context: TrialContext, device: torch.device, threads: int
) -> dict[str, Any]:
    """The batch latency (a secondary figure: one run of repeats)."""
    protocol = context.settings.latency
    assert protocol.batch_size is not None
    settings = _latency_settings(context, device, threads, protocol.batch_size, protocol.repeats)
    input_size = protocol.input_size or context.settings.train.input_size
    batched = _measure_one_run(model, device, input_size, settings)
    return {
        "batch_latency_ms": batched.median_ms,
        "batch_per_image_ms": batched.per_image_ms,
        "latency_batch_size": protocol.batch_size,
    }


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
    threads = max(1, int(context.cpus_per_trial))
    torch.set_num_threads(threads)
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
