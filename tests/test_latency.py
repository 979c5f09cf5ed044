"""Latency measurement: the passes run as the settings say; statistics consistent."""

from __future__ import annotations

import pytest
import torch

from threshnet.config import StageConfig, ThreshNetConfig
from threshnet.latency import LatencySettings, measure_latency
from threshnet.model import build_model

TINY = ThreshNetConfig(
    stages=(StageConfig(2, 8, 16, True), StageConfig(2, 8, 32, False)), threshold=1, stem=(8, 16)
)


def _watch(model: torch.nn.Module) -> list[dict[str, object]]:
    """Record, for every forward pass of ``model``, what the pass ran under."""
    calls: list[dict[str, object]] = []

    def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        (inputs,) = args
        calls.append(
            {
                "threads": torch.get_num_threads(),
                "batch": inputs.shape[0],
                "dtype": inputs.dtype,
                "channels_last": inputs.is_contiguous(memory_format=torch.channels_last)
                and not inputs.is_contiguous(),
                "training": module.training,
                "grad": torch.is_grad_enabled(),
            }
        )

    model.register_forward_pre_hook(hook)
    return calls


def test_runs_warmup_plus_repeats_passes_under_the_settings() -> None:
    threads_before = torch.get_num_threads()
    model = build_model(TINY).train()
    calls = _watch(model)
    wanted_threads = 1 if threads_before > 1 else 2
    settings = LatencySettings(batch_size=3, warmup=2, repeats=15, threads=wanted_threads)
    result = measure_latency(model, input_size=32, settings=settings)
    timed = [call for call in calls if call["batch"] == 3]
    assert len(timed) == 2 + 15
    assert len(calls) - len(timed) <= 1  # one batch-1 pass sizes the batch's memory
    assert {call["threads"] for call in timed} == {wanted_threads}
    assert not any(call["training"] or call["grad"] for call in calls)
    assert torch.get_num_threads() == threads_before  # restored afterwards
    assert result.threads == wanted_threads
    assert result.min_ms <= result.p10_ms <= result.median_ms <= result.p90_ms
    assert result.min_ms > 0 and result.stdev_ms >= 0
    assert result.per_image_ms == pytest.approx(result.median_ms / 3)


def test_channels_last_and_bfloat16_reach_the_model() -> None:
    model = build_model(TINY)
    calls = _watch(model)
    settings = LatencySettings(repeats=3, warmup=1, channels_last=True, dtype="bfloat16")
    result = measure_latency(model, input_size=32, settings=settings)
    assert len(calls) == 4
    assert all(call["channels_last"] and call["dtype"] == torch.bfloat16 for call in calls)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert result.channels_last and result.dtype == "bfloat16"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (LatencySettings(repeats=2), "repeats must be an integer >= 3"),
        (LatencySettings(batch_size=0), "batch_size must be"),
        (LatencySettings(threads=0), "threads must be"),
        (LatencySettings(dtype="int8"), "dtype must be one of"),
    ],
)
def test_bad_settings(settings: LatencySettings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measure_latency(build_model(TINY), input_size=32, settings=settings)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        measure_latency(build_model(TINY), input_size=32, device="cuda")
