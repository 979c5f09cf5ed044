"""A trial's latency on its worker: the objective (batch 1, in rounds paired with the
reference network, on the study's latency scale), the batch figure, and the study's
reference time where it has none yet for this device kind.

The objective is ``latency_ratio`` x the study's reference time for the trial's device
kind (threshnet.latency_scale); ``latency_raw_ms`` keeps the trial's own milliseconds.
Timing holds the device's gate exclusively (no other trial computes on it meanwhile) and
is taken again, a bounded number of times, while the machine was oversubscribed
(threshnet.machine_load); the record says how loaded it was.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from search.worker.context import TrialContext
from search.worker.gate import DeviceGate, device_key
from threshnet.gpu_state import gpu_state
from threshnet.latency import LatencyResult, LatencySettings, device_name, measure_latency
from threshnet.latency_scale import ReferenceTime, device_kind, measure_reference_time
from threshnet.machine_load import attempts_on, measure_when_calm
from threshnet.model import build_model
from threshnet.steady_latency import measure_steady_latency, reference_config, timed_network

if TYPE_CHECKING:
    from threshnet.steady_latency import Network

# Reference times this (warm) worker measured for device kinds its study had not timed
_scale_timed_here: dict[str, float] = {}


def latency_device(context: TrialContext, trial_device: torch.device) -> torch.device:
    """Where the study times latency: the trial's device, or the one it names."""
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


def _input_size(context: TrialContext) -> int:
    return context.settings.latency.input_size or context.settings.train.input_size


def worker_device_kind(context: TrialContext, device: torch.device, threads: int) -> str:
    """This worker's device kind for the study's latency scale."""
    return device_kind(
        context.settings.latency.backend,
        device,
        device_name(device),
        threads if device.type == "cpu" else None,
    )


def _reference(context: TrialContext, device: torch.device, threads: int) -> Network:
    """The reference network as the study's backend runs it."""
    if context.settings.latency.backend == "eager":
        return build_model(reference_config())
    return _onnx_reference(_input_size(context), device, threads)


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


def measure_study_reference(
    context: TrialContext, device: torch.device, threads: int, source: str
) -> ReferenceTime:
    """The reference network's time on this worker by the study's protocol."""
    protocol = context.settings.latency
    with _alone_on(device):
        return measure_reference_time(
            _reference(context, device, threads),
            input_size=_input_size(context),
            device=device,
            settings=_latency_settings(context, device, threads, 1, protocol.repeats_per_round),
            rounds=protocol.rounds,
            source=source,
            clock=protocol.clock,
        )


def measure_objective_latency(
    model: nn.Module, context: TrialContext, device: torch.device, threads: int
) -> dict[str, Any]:
    """The objective: batch-1 latency in rounds interleaved with the reference network,
    both run by the study's latency backend, on the study's scale (the record's latency
    fields)."""
    protocol = context.settings.latency
    settings = _latency_settings(context, device, threads, 1, protocol.repeats_per_round)
    input_size = _input_size(context)
    if protocol.rounds == 0:  # a study made before rounds: measure as its trials were
        with _alone_on(device):
            single = measure_latency(model, input_size=input_size, device=device, settings=settings)
        return {**_latency_fields(single), "latency_ms": single.median_ms}
    # exported (onnxruntime) before the gate is taken: it takes seconds
    candidate = timed_network(
        model, protocol.backend, input_size=input_size, device=device, threads=threads
    )
    reference = _reference(context, device, threads)
    with _alone_on(device) as gate:
        before = gpu_state(device, "before")
        steady, load, attempts = measure_when_calm(
            lambda: measure_steady_latency(
                candidate,
                reference,
                input_size=input_size,
                device=device,
                settings=settings,
                rounds=protocol.rounds,
                clock=protocol.clock,
            ),
            attempts=attempts_on(device.type),
        )
        after = gpu_state(device, "after")
    record: dict[str, Any] = {
        **_latency_fields(steady.candidate),
        **load.record(),
        **before,
        **after,
        "latency_warmup_passes": steady.warmup_passes,
        "latency_ms": steady.latency_ms,
        "latency_raw_ms": steady.latency_ms,
        "latency_ref_ms": steady.reference_ms,
        "latency_ratio": steady.ratio,
        "latency_cv": steady.ratio_cv,
        "latency_rounds": steady.rounds,
        "latency_unsteady": int(steady.unsteady),
        "latency_attempts": attempts,
        "latency_gate_wait_s": gate.waited_s,
        "latency_clock": steady.clock,
    }
    if steady.cpu is not None:
        record.update(latency_cpu_ms=steady.cpu.latency_ms, latency_cpu_ratio=steady.cpu.ratio)
    if context.latency_scale is not None:
        kind = worker_device_kind(context, device, threads)
        scale_ms = context.latency_scale.get(kind) or _scale_timed_here.get(kind)
        if scale_ms is None:  # a node of a kind the study has not timed: time it here
            source = "a trial's worker, the first of this device kind"
            scale_ms = measure_study_reference(context, device, threads, source).ms
            _scale_timed_here[kind] = scale_ms
        record.update(
            latency_ms=steady.ratio * scale_ms, latency_scale_ms=scale_ms, latency_kind=kind
        )
    return record


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


@contextlib.contextmanager
def _alone_on(device: torch.device) -> Iterator[DeviceGate]:
    """Hold ``device``'s gate exclusively: no other trial computes on it meanwhile (the
    gate's ``waited_s`` says how long getting in took)."""
    gate = DeviceGate(device_key(device))
    try:
        with gate.exclusive():
            yield gate
    finally:
        gate.close()


def measure_batch_latency(
    model: nn.Module, context: TrialContext, device: torch.device, threads: int
) -> dict[str, Any]:
    """The batch latency (a secondary figure: one run of repeats)."""
    protocol = context.settings.latency
    assert protocol.batch_size is not None
    settings = _latency_settings(context, device, threads, protocol.batch_size, protocol.repeats)
    with _alone_on(device):
        batched = measure_latency(
            model, input_size=_input_size(context), device=device, settings=settings
        )
    return {
        "batch_latency_ms": batched.median_ms,
        "batch_per_image_ms": batched.per_image_ms,
        "latency_batch_size": protocol.batch_size,
    }
