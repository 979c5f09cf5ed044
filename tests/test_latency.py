"""Latency measurement: settings honoured and recorded, statistics consistent."""

from __future__ import annotations

import pytest
import torch

from threshnet.config import StageConfig, ThreshNetConfig
from threshnet.latency import LatencySettings, measure_latency
from threshnet.model import build_model

TINY = ThreshNetConfig(
    stages=(StageConfig(2, 8, 16, True), StageConfig(2, 8, 32, False)), threshold=1, stem=(8, 16)
)


def test_statistics_are_ordered_and_settings_recorded() -> None:
    threads_before = torch.get_num_threads()
    model = build_model(TINY).train()
    settings = LatencySettings(batch_size=3, warmup=2, repeats=15, threads=1)
    result = measure_latency(model, input_size=32, settings=settings)
    assert result.min_ms <= result.p10_ms <= result.median_ms <= result.p90_ms
    assert result.min_ms > 0
    assert result.per_image_ms == pytest.approx(result.median_ms / 3)
    assert (result.batch_size, result.repeats, result.warmup, result.threads) == (3, 15, 2, 1)
    assert result.torch_version == torch.__version__
    assert not model.training
    assert torch.get_num_threads() == threads_before


def test_channels_last_and_bfloat16_run_on_cpu() -> None:
    settings = LatencySettings(repeats=3, warmup=1, channels_last=True, dtype="bfloat16")
    result = measure_latency(build_model(TINY), input_size=32, settings=settings)
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
