"""The search space: presets are exact points, sampling is valid and conditional."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from space import (
    DEFAULT_SPACE,
    CostCaps,
    check_config,
    config_to_params,
    param_names,
    params_to_config,
    sample_params,
)
from space.sampling import width_at, width_position
from threshnet.presets import PRESETS, PUBLISHED_PRESETS, get_preset


@pytest.mark.parametrize("name", PUBLISHED_PRESETS)
def test_published_presets_are_exact_points(name: str) -> None:
    config = get_preset(name)
    params = config_to_params(config, DEFAULT_SPACE)
    assert params_to_config(params, DEFAULT_SPACE) == config
    assert set(params) <= set(param_names(DEFAULT_SPACE))


def test_hardnet68_pool_pattern_is_outside_the_default_space() -> None:
    with pytest.raises(ValueError, match=r"s2_downsample=False .*s3_downsample=True"):
        config_to_params(PRESETS["hardnet68"], DEFAULT_SPACE)


def test_out_of_range_values_are_named() -> None:
    params = config_to_params(get_preset("threshnet79"), DEFAULT_SPACE)
    params["s1_depth"] = 40
    with pytest.raises(ValueError, match=r"s1_depth=40 \(space: \[1, 12\] step 1\)"):
        config_to_params(params_to_config(params, DEFAULT_SPACE), DEFAULT_SPACE)


def test_every_trial_samples_every_parameter_and_widths_follow_the_stage_kind() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    thresholds = set()
    for _ in range(60):
        trial = study.ask()
        params = sample_params(trial, DEFAULT_SPACE)
        assert params == trial.params
        assert list(params) == param_names(DEFAULT_SPACE)  # fixed dimension
        config = params_to_config(params, DEFAULT_SPACE)
        config.validate(input_size=32)
        assert params_to_config(config_to_params(config, DEFAULT_SPACE), DEFAULT_SPACE) == config
        threshold = params["threshold"]
        thresholds.add(threshold)
        for index, (stage, ranges) in enumerate(
            zip(config.stages, DEFAULT_SPACE.stages, strict=True)
        ):
            dense = index < threshold
            assert stage.growth in (ranges.growth if dense else ranges.k)
            position = params[f"s{index + 1}_width"]
            widths = ranges.growth if dense else ranges.k
            count = (widths.high - widths.low) // widths.step + 1
            assert (stage.growth - widths.low) // widths.step == min(
                int(position * count), count - 1
            )
            expected_m = 1.7 if dense else params[f"s{index + 1}_m"]
            assert stage.multiplier == expected_m
        study.tell(trial, 0.0)
    assert thresholds == set(range(6))


def test_toml_overrides_replace_only_what_they_name(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text("threshold = [2, 4]\n\n[[stages]]\ndepth = [2, 6, 2]\n")
    space = DEFAULT_SPACE.load_overrides(path)
    assert (space.threshold.low, space.threshold.high) == (2, 4)
    assert (space.stages[0].depth.low, space.stages[0].depth.high, space.stages[0].depth.step) == (
        2,
        6,
        2,
    )
    assert space.stages[0].transition == DEFAULT_SPACE.stages[0].transition
    assert space.stages[1:] == DEFAULT_SPACE.stages[1:]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threshold = [0, 9]\n", r"threshold range \[0, 9\] step 1 must lie within \[0, 5\]"),
        ("thresold = [0, 3]\n", r"unknown key\(s\) \['thresold'\]"),
        ("threshold = [0, 3\n", "not valid TOML"),
        ("[[stages]]\ndepth = [5, 1]\n", r"stages\[0\]\.depth: invalid range low=5 high=1"),
        ("[[stages]]\nm = [0.5]\n", r"stages\[0\]\.m must be a non-empty list within"),
    ],
)
def test_bad_space_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        DEFAULT_SPACE.load_overrides(path)


def test_caps_mark_configs_infeasible_without_training() -> None:
    costs, reasons = check_config(get_preset("threshnet95"), CostCaps(max_params=15_000_000), 32)
    assert costs.params == 16_189_202
    assert reasons == ["params 16,189,202 > max 15,000,000"]
    _, reasons = check_config(get_preset("threshnet28"), CostCaps(15_000_000, 10**9), 32)
    assert reasons == []


def test_a_uniform_width_position_draws_every_width_equally_often() -> None:
    growth = DEFAULT_SPACE.stages[0].growth  # 16, 24, 32, 40, 48
    draws = [width_at((i + 0.5) / 1000, growth) for i in range(1000)]
    assert {value: draws.count(value) for value in set(draws)} == {
        16: 200,
        24: 200,
        32: 200,
        40: 200,
        48: 200,
    }
    for value in (16, 24, 32, 40, 48):
        assert width_at(width_position(value, growth), growth) == value
