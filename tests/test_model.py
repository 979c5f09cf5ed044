"""The builder: every threshold, other stage counts, block semantics, closed-form costs."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from typing import Any

import pytest
import torch

from space import DEFAULT_SPACE, extreme_configs, params_to_config, sample_params
from threshnet.config import StageConfig, ThreshNetConfig
from threshnet.costs import architecture_costs, count_params, module_costs, static_costs
from threshnet.layers import DenseBlock
from threshnet.model import ThreshNet, build_model, describe_stages
from threshnet.presets import HARDNET68, PUBLISHED_PRESETS, THRESHNET79, get_preset


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


class _RandomTrial:
    """A trial (``space.sampling.SuggestingTrial``) that draws every suggestion uniformly."""

    def __init__(self, seed: int):
        self._random = random.Random(seed)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        return self._random.randrange(low, high + 1, step)

    def suggest_float(self, name: str, low: float, high: float) -> float:
        return self._random.uniform(low, high)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._random.choice(list(choices))


def _cost_configs() -> list[tuple[str, ThreshNetConfig]]:
    """Presets, the space's extremes, random points of it and off-space shapes."""
    configs = [(name, get_preset(name)) for name in PUBLISHED_PRESETS]
    configs.append(("hardnet68", HARDNET68))
    configs += extreme_configs(DEFAULT_SPACE)
    configs += [
        (
            f"random-{seed}",
            params_to_config(sample_params(_RandomTrial(seed), DEFAULT_SPACE), DEFAULT_SPACE),
        )
        for seed in range(16)
    ]
    configs.append(
        (
            "4-stage, odd stem and bottleneck, 7 classes",
            ThreshNetConfig(
                stages=(
                    StageConfig(3, 12, 40, True),
                    StageConfig(1, 7, 52, True),
                    StageConfig(5, 10, 96, True, multiplier=1.3),
                    StageConfig(9, 6, 100, False, multiplier=2.5),
                ),
                threshold=2,
                stem=(5, 11),
                bottleneck=24,
                num_classes=7,
            ),
        )
    )
    configs.append(
        (
            "1-stage dense",
            ThreshNetConfig(stages=(StageConfig(2, 3, 9, False),), threshold=1, stem=(4, 6)),
        )
    )
    return configs


COST_CONFIGS = _cost_configs()


@pytest.mark.parametrize(
    "config", [config for _, config in COST_CONFIGS], ids=[name for name, _ in COST_CONFIGS]
)
def test_closed_form_costs_equal_the_measured_costs_of_the_built_network(
    config: ThreshNetConfig,
) -> None:
    """Every field of the closed forms equals what flop counting and leaf hooks measure."""
    with torch.device("meta"):  # shapes only: the measured pass is cheap for big nets
        model = build_model(config)
    for input_size in (32, 37):  # 37 is odd: sizes round down in the stem and the pools
        measured = module_costs(model, input_size=input_size)
        assert static_costs(config, input_size) == measured
        closed = architecture_costs(config, input_size)
        assert (closed.params, closed.macs) == (measured.params, measured.macs)


def test_closed_form_costs_equal_costs_of_a_real_module() -> None:
    config = _with_threshold(2)
    model = build_model(config)
    assert module_costs(model, input_size=32) == static_costs(config, 32)
    assert count_params(model) == static_costs(config, 32).params


def test_static_costs_build_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("static_costs built a network")

    monkeypatch.setattr(ThreshNet, "__init__", refuse)
    assert static_costs(get_preset("threshnet95"), 32).params == 16_189_202


def test_static_costs_do_not_import_dynamo() -> None:
    """A fresh process: importing torch._dynamo alone takes seconds (the old meta pass)."""
    code = (
        "import sys\n"
        "from threshnet.costs import static_costs\n"
        "from threshnet.presets import get_preset\n"
        "static_costs(get_preset('threshnet95'), 32)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_closed_form_feature_sizes_are_the_built_networks() -> None:
    # search.setup.preflight refuses an input size by ThreshNetConfig.feature_sizes alone
    # (no forward pass): each stage's input must be what the built network sees, and the
    # smallest size it accepts must run.
    configs = [config for _, config in extreme_configs(DEFAULT_SPACE)]
    configs += [get_preset(name) for name in PUBLISHED_PRESETS]
    seen: list[int] = []  # each stage's input size, as the last forward pass saw it
    for config in configs:
        model = build_model(config).eval()
        for stage in model.stages:
            stage.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[-1]))
        smallest = next(size for size in range(1, 64) if _fits(config, size))
        for size in (smallest, smallest + 3, 32):
            seen.clear()
            with torch.inference_mode():
                model(torch.zeros(1, 3, size, size))
            assert seen == config.feature_sizes(size), (config, size)
        with pytest.raises(ValueError, match="would collapse it"):
            config.validate(input_size=smallest - 1)


def _fits(config: ThreshNetConfig, input_size: int) -> bool:
    try:
        config.feature_sizes(input_size)
    except ValueError:
        return False
    return True
