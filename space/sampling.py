"""Between a search space, Optuna trials, flat parameter dicts and ThreshNet configs.

Parameters are conditional: ``threshold`` is sampled first; then, per stage ``i``
(1-based in names), ``s{i}_depth`` and ``s{i}_transition`` always, ``s{i}_growth`` only
when the stage is dense, and ``s{i}_k`` and ``s{i}_m`` only when it is harmonic. A
dense growth rate and a harmonic base width are different quantities on different
scales, so they are separate parameters rather than one shared name; Optuna's TPE
(``multivariate=True, group=True``) models such conditional spaces directly.
"""

from __future__ import annotations

from typing import Any, Protocol

from space.ranges import IntRange, SearchSpace
from threshnet.config import DEFAULT_MULTIPLIER, StageConfig, ThreshNetConfig


class SuggestingTrial(Protocol):
    """The part of ``optuna.Trial`` used here (Ray's wrapper satisfies it too)."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def param_names(space: SearchSpace) -> list[str]:
    """Every parameter the space can produce, in a stable order (for table columns)."""
    names = ["threshold"]
    for index in range(1, len(space.stages) + 1):
        names += [f"s{index}_{knob}" for knob in ("depth", "growth", "k", "m", "transition")]
    return names


def _suggest(trial: SuggestingTrial, name: str, bounds: IntRange) -> int:
    return trial.suggest_int(name, bounds.low, bounds.high, step=bounds.step)


def sample_params(trial: SuggestingTrial, space: SearchSpace) -> dict[str, Any]:
    """Define-by-run sampling; returns the flat parameter dict (no arithmetic, cheap)."""
    params: dict[str, Any] = {"threshold": _suggest(trial, "threshold", space.threshold)}
    for index, stage in enumerate(space.stages):
        prefix = f"s{index + 1}_"
        params[prefix + "depth"] = _suggest(trial, prefix + "depth", stage.depth)
        if index < params["threshold"]:
            params[prefix + "growth"] = _suggest(trial, prefix + "growth", stage.growth)
        else:
            params[prefix + "k"] = _suggest(trial, prefix + "k", stage.k)
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
                growth=params[prefix + ("growth" if dense else "k")],
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
    """The parameter dict of ``config``; ValueError if it is not a point of ``space``."""
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
        if config.is_dense(index):
            params[prefix + "growth"] = stage.growth
            checks.append((prefix + "growth", stage.growth, ranges.growth))
        else:
            params[prefix + "k"] = stage.growth
            params[prefix + "m"] = stage.multiplier
            checks.append((prefix + "k", stage.growth, ranges.k))
            if stage.multiplier not in ranges.m:
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
