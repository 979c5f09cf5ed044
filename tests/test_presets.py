"""The published models as presets of one builder, checked against the authors' numbers."""

from __future__ import annotations

import pytest

from threshnet.config import ThreshNetConfig
from threshnet.costs import count_params, static_costs
from threshnet.model import ThreshNet, build_model
from threshnet.presets import PRESETS, PUBLISHED, get_preset, preset_name


@pytest.mark.parametrize(
    ("name", "params"),
    [("threshnet79", 14_371_858), ("threshnet95", 16_189_202), ("hardnet68", 16_550_598)],
)
def test_released_parameter_counts_are_exact(name: str, params: int) -> None:
    assert count_params(build_model(get_preset(name))) == params


@pytest.mark.parametrize(("name", "gmacs"), [("threshnet79", 3.4231), ("threshnet95", 4.0273)])
def test_macs_at_224(name: str, gmacs: float) -> None:
    costs = static_costs(get_preset(name), 224)
    assert round(costs.macs / 1e9, 4) == gmacs
    assert costs.flops == 2 * costs.macs


@pytest.mark.parametrize("name", ["threshnet79", "threshnet95"])
def test_torchstat_figures_reproduce_the_readme(name: str) -> None:
    costs = static_costs(get_preset(name), 224)
    published = PUBLISHED[name]
    assert round(costs.torchstat_flops / 1e9, 2) == published.torchstat_gflops
    assert round(costs.torchstat_madd / 1e9, 2) == published.torchstat_gmadd
    assert round(costs.activation_mb, 2) == published.torchstat_memory_mb


def test_threshnet28_reconstruction_fits_the_published_figures() -> None:
    config = get_preset("threshnet28")
    costs = static_costs(config, 224)
    published = PUBLISHED["threshnet28"]
    assert config.depth == 28
    assert config.threshold == 3 and config.num_stages == 5
    assert abs(costs.params / (published.params_m * 1e6) - 1) < 0.01
    assert abs(costs.torchstat_flops / (published.torchstat_gflops * 1e9) - 1) < 0.03
    assert abs(costs.torchstat_madd / (published.torchstat_gmadd * 1e9) - 1) < 0.03
    assert abs(costs.activation_mb / published.torchstat_memory_mb - 1) < 0.015


@pytest.mark.parametrize(
    ("name", "depth"), [("threshnet28", 28), ("threshnet79", 79), ("threshnet95", 95)]
)
def test_depth_naming(name: str, depth: int) -> None:
    assert get_preset(name).depth == depth


def test_presets_are_configs_of_the_one_builder() -> None:
    for name, config in PRESETS.items():
        model = build_model(config)
        assert type(model) is ThreshNet
        assert preset_name(config) == name
        assert preset_name(ThreshNetConfig.from_json(config.to_json())) == name


def test_unknown_preset_lists_known_names() -> None:
    with pytest.raises(ValueError, match="threshnet79"):
        get_preset("threshnet80")
