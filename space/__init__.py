"""The ThreshNet search space: ranges, sampling from Optuna trials, presets as points."""

from space.constraints import LATENCY_CONSTRAINT, CostCaps, check_config
from space.ranges import DEFAULT_SPACE, SPACE_VERSION, IntRange, SearchSpace, StageSpace
from space.sampling import (
    config_to_params,
    extreme_configs,
    param_names,
    params_to_config,
    preset_points,
    sample_params,
)

__all__ = [
    "DEFAULT_SPACE",
    "LATENCY_CONSTRAINT",
    "SPACE_VERSION",
    "CostCaps",
    "IntRange",
    "SearchSpace",
    "StageSpace",
    "check_config",
    "config_to_params",
    "extreme_configs",
    "param_names",
    "params_to_config",
    "preset_points",
    "sample_params",
]
