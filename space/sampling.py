"""Between a search space, Optuna trials, flat parameter dicts and ThreshNet configs.

Every trial suggests the same parameters (a fixed-dimension space, so that every Optuna
sampler models all of them jointly): ``threshold``, then per stage ``i`` (1-based in
names) ``s{i}_depth``, ``s{i}_width``, ``s{i}_m`` and ``s{i}_transition``.

``s{i}_width`` is a position in [0, 1] within the stage's width range (each value owns an
equal share of [0, 1], so a uniform position draws every width equally often), whose
meaning follows the stage's kind: the dense growth range when the stage is dense, the harmonic
base width (k) range when it is harmonic. A dense growth of 32 and a harmonic k of 40 are
different quantities on different scales; one position keeps the dimension fixed and
each kind's values on its own grid. ``s{i}_m`` is always sampled and used only by a
harmonic stage. The published presets are exact points (their positions are the middles
of their widths' shares).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from space.ranges import IntRange, SearchSpace
from threshnet.config import DEFAULT_MULTIPLIER, StageConfig, ThreshNetConfig
from threshnet.presets import PUBLISHED_PRESETS, get_preset

KNOBS = ("depth", "width", "m", "transition")


class SuggestingTrial(Protocol):
    """The part of ``optuna.Trial`` used here (Ray's wrapper satisfies it too)."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...

    def suggest_float(self, name: str, low: float, high: float) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def param_names(space: SearchSpace) -> list[str]:
    """Every parameter of the space, in a stable order (for table columns)."""
    names = ["threshold"]
    for index in range(1, len(space.stages) + 1):
        names += [f"s{index}_{knob}" for knob in KNOBS]
    return names


def _suggest(trial: SuggestingTrial, name: str, bounds: IntRange) -> int:
    return trial.suggest_int(name, bounds.low, bounds.high, step=bounds.step)


def _grid(bounds: IntRange) -> int:
    """How many values ``bounds`` holds."""
    return (bounds.high - bounds.low) // bounds.step + 1


def width_at(position: float, bounds: IntRange) -> int:
    """The value of ``bounds`` whose equal share of [0, 1] holds ``position``."""
    count = _grid(bounds)
    index = min(int(min(max(position, 0.0), 1.0) * count), count - 1)
    return bounds.low + index * bounds.step


def width_position(value: int, bounds: IntRange) -> float:
    """The middle of ``value``'s share of [0, 1] within ``bounds`` (``width_at`` maps it
    back to ``value``)."""
    return ((value - bounds.low) // bounds.step + 0.5) / _grid(bounds)


def sample_params(trial: SuggestingTrial, space: SearchSpace) -> dict[str, Any]:
    """Define-by-run sampling of every parameter; the flat parameter dict (cheap)."""
    params: dict[str, Any] = {"threshold": _suggest(trial, "threshold", space.threshold)}
    for index, stage in enumerate(space.stages):
        prefix = f"s{index + 1}_"
        params[prefix + "depth"] = _suggest(trial, prefix + "depth", stage.depth)
        params[prefix + "width"] = trial.suggest_float(prefix + "width", 0.0, 1.0)
        params[prefix + "m"] = trial.suggest_categorical(prefix + "m", list(stage.m))
        params[prefix + "transition"] = _suggest(trial, prefix + "transition", stage.transition)
    return params


def params_to_config(params: dict[str, Any], space: SearchSpace) -> ThreshNetConfig:
    """Build the config a parameter dict describes (extra keys are ignored)."""
    threshold = params["threshold"]
    stages = []
    for index, stage in enumerate(space.stages):
        prefix = f"s{index + 1}_"
        dense = index < threshold
        stages.append(
            StageConfig(
                depth=params[prefix + "depth"],
                growth=width_at(params[prefix + "width"], stage.growth if dense else stage.k),
                transition=params[prefix + "transition"],
                downsample=stage.downsample,
                multiplier=DEFAULT_MULTIPLIER if dense else params[prefix + "m"],
            )
        )
    return ThreshNetConfig(
        stages=tuple(stages),
        threshold=threshold,
        stem=space.stem,
        bottleneck=space.bottleneck,
        num_classes=space.num_classes,
    )


def config_to_params(config: ThreshNetConfig, space: SearchSpace) -> dict[str, Any]:
    """The parameter dict of ``config``; ValueError if it is not a point of ``space``.

    A dense stage's ``m`` (which it does not use) is its multiplier when the space offers
    it, else the space's first choice.
    """
    problems = []
    fixed = {
        "number of stages": (config.num_stages, len(space.stages)),
        "stem": (config.stem, space.stem),
        "bottleneck": (config.bottleneck, space.bottleneck),
        "num_classes": (config.num_classes, space.num_classes),
    }
    problems += [
        f"{key} {ours} != {theirs}" for key, (ours, theirs) in fixed.items() if ours != theirs
    ]
    if problems:
        raise ValueError("config is not in the space: " + "; ".join(problems))
    params: dict[str, Any] = {"threshold": config.threshold}
    checks: list[tuple[str, Any, Any]] = [("threshold", config.threshold, space.threshold)]
    for index, (stage, ranges) in enumerate(zip(config.stages, space.stages, strict=True)):
        prefix = f"s{index + 1}_"
        if stage.downsample != ranges.downsample:
            problems.append(f"{prefix}downsample={stage.downsample} (space: {ranges.downsample})")
        params[prefix + "depth"] = stage.depth
        checks.append((prefix + "depth", stage.depth, ranges.depth))
        dense = config.is_dense(index)
        widths, kind = (ranges.growth, "growth") if dense else (ranges.k, "k")
        checks.append((f"{prefix}{kind}", stage.growth, widths))
        params[prefix + "width"] = width_position(stage.growth, widths)
        if stage.multiplier in ranges.m:
            params[prefix + "m"] = stage.multiplier
        elif dense:
            params[prefix + "m"] = ranges.m[0]
        else:
            problems.append(f"{prefix}m={stage.multiplier} (space: {list(ranges.m)})")
        params[prefix + "transition"] = stage.transition
        checks.append((prefix + "transition", stage.transition, ranges.transition))
    problems += [
        f"{name}={value} (space: {bounds.describe()})"
        for name, value, bounds in checks
        if value not in bounds
    ]
    if problems:
        raise ValueError("config is not in the space: " + "; ".join(problems))
    return params


def extreme_configs(space: SearchSpace) -> list[tuple[str, ThreshNetConfig]]:
    """The smallest and largest config of the space at its lowest and highest threshold,
    named; between them every stage takes every kind (dense, harmonic) it can take.

    Raises ValueError (naming the config and the field) when one is not a valid network.
    """
    configs = []
    for threshold in sorted({space.threshold.low, space.threshold.high}):
        for label, pick, choose in (("smallest", _low, min), ("largest", _high, max)):
            name = f"the {label} config at threshold {threshold}"
            dense = [index < threshold for index in range(len(space.stages))]
            try:
                stages = tuple(
                    StageConfig(
                        depth=pick(stage.depth),
                        growth=pick(stage.growth if is_dense else stage.k),
                        transition=pick(stage.transition),
                        downsample=stage.downsample,
                        multiplier=DEFAULT_MULTIPLIER if is_dense else choose(stage.m),
                    )
                    for stage, is_dense in zip(space.stages, dense, strict=True)
                )
                config = ThreshNetConfig(
                    stages=stages,
                    threshold=threshold,
                    stem=space.stem,
                    bottleneck=space.bottleneck,
                    num_classes=space.num_classes,
                )
            except (ValueError, TypeError) as error:
                raise ValueError(f"{name} is not a valid network: {error}") from None
            configs.append((name, config))
    return configs


def _low(bounds: IntRange) -> int:
    return bounds.low


def _high(bounds: IntRange) -> int:
    return bounds.high


def preset_points(
    space: SearchSpace,
) -> tuple[list[tuple[str, ThreshNetConfig, dict[str, Any]]], list[tuple[str, str]]]:
    """The published presets as points of ``space`` (with the space's class count):
    (name, config, params) of those that are points, and (name, why not) of the others."""
    points, outside = [], []
    for name in PUBLISHED_PRESETS:
        preset = dataclasses.replace(get_preset(name), num_classes=space.num_classes)
        try:
            points.append((name, preset, config_to_params(preset, space)))
        except ValueError as error:
            outside.append((name, str(error)))
    return points, outside
