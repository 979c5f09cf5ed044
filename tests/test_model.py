"""The builder: every threshold, other stage counts, block semantics, closed-form costs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from threshnet.config import StageConfig, ThreshNetConfig
from threshnet.costs import architecture_costs, count_params, module_costs, static_costs
from threshnet.layers import DenseBlock
from threshnet.model import build_model, describe_stages
from threshnet.presets import THRESHNET79


def _with_threshold(threshold: int) -> ThreshNetConfig:
    return dataclasses.replace(THRESHNET79, threshold=threshold)


@pytest.mark.parametrize("threshold", range(6))
@pytest.mark.parametrize("input_size", [32, 224])
def test_every_threshold_builds_and_runs(threshold: int, input_size: int) -> None:
    model = build_model(_with_threshold(threshold)).eval()
    batch = 2 if input_size == 32 else 1
    with torch.inference_mode():
        out = model(torch.randn(batch, 3, input_size, input_size))
    assert out.shape == (batch, 10)
    assert torch.isfinite(out).all()
    kinds = [summary.kind for summary in describe_stages(model.config, input_size)]
    assert kinds == ["dense"] * threshold + ["harmonic"] * (5 - threshold)


@pytest.mark.parametrize(
    "stages",
    [
        (
            StageConfig(4, 24, 96, True),
            StageConfig(6, 24, 160, True),
            StageConfig(8, 32, 320, True),
            StageConfig(4, 64, 512, False),
        ),
        (
            StageConfig(2, 16, 64, True),
            StageConfig(4, 16, 96, False),
            StageConfig(4, 20, 128, True),
            StageConfig(8, 24, 192, False),
            StageConfig(8, 32, 256, True),
            StageConfig(4, 64, 384, False),
        ),
    ],
    ids=["4-stage", "6-stage"],
)
def test_other_stage_counts_build(stages: tuple[StageConfig, ...]) -> None:
    config = ThreshNetConfig(stages=stages, threshold=2, num_classes=7)
    model = build_model(config).eval()
    with torch.inference_mode():
        assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)


def test_dense_block_keeps_its_input_first_and_untouched() -> None:
    block = DenseBlock(16, depth=3, growth=8, bottleneck=32).eval()
    x = torch.randn(2, 16, 4, 4)
    original = x.clone()
    with torch.no_grad():
        out = block(x)
    assert out.shape == (2, 16 + 3 * 8, 4, 4)
    assert torch.equal(out[:, :16], original)
    assert torch.equal(x, original)


@pytest.mark.parametrize("threshold", [0, 2, 3, 5])
@pytest.mark.parametrize("input_size", [32, 64])
def test_counted_costs_match_closed_form(threshold: int, input_size: int) -> None:
    config = _with_threshold(threshold)
    costs = static_costs(config, input_size)
    closed = architecture_costs(config, input_size)
    assert (costs.params, costs.macs) == (closed.params, closed.macs)


def test_meta_costs_equal_costs_of_a_real_module() -> None:
    config = _with_threshold(2)
    model = build_model(config)
    assert module_costs(model, input_size=32) == static_costs(config, 32)
    assert count_params(model) == static_costs(config, 32).params
