"""The search space as data: ranges per knob, loadable from and writable to TOML/JSON dicts.

Each of the network's stages has its own ranges. The threshold picks how many leading
stages are dense; a dense stage samples a growth rate (``growth``), a harmonic stage a
base width ``k`` and a multiplier ``m``. Stem, bottleneck, class count and the pooling
pattern are fixed by the space (the pattern is what keeps every sample valid at the
training resolution).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threshnet.config import (
    DEFAULT_BOTTLENECK,
    DEFAULT_NUM_CLASSES,
    DEFAULT_STEM,
    MULTIPLIER_RANGE,
)


@dataclass(frozen=True)
class IntRange:
    """Integers ``low, low + step, ..., high``."""

    low: int
    high: int
    step: int = 1

    def __post_init__(self) -> None:
        for name in ("low", "high", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"range {name} must be an integer, got {value!r}")
        if self.step < 1 or self.low > self.high or (self.high - self.low) % self.step:
            raise ValueError(
                f"invalid range low={self.low} high={self.high} step={self.step}: need "
                "low <= high, step >= 1 and high - low divisible by step"
            )

    def __contains__(self, value: object) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
            and (value - self.low) % self.step == 0
        )

    def describe(self) -> str:
        return f"[{self.low}, {self.high}] step {self.step}"

    @classmethod
    def parse(cls, value: Any, where: str) -> IntRange:
        """From ``[low, high]``, ``[low, high, step]`` or ``{low, high, step}``."""
        try:
            if isinstance(value, Mapping):
                unknown = set(value) - {"low", "high", "step"}
                if unknown:
                    raise ValueError(f"unknown key(s) {sorted(unknown)}")
                return cls(value["low"], value["high"], value.get("step", 1))
            if isinstance(value, list | tuple) and len(value) in (2, 3):
                return cls(*value)
            raise ValueError("expected [low, high] or [low, high, step]")
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{where}: {error}") from None


@dataclass(frozen=True)
class StageSpace:
    """Ranges of one stage. ``growth`` applies when it is dense; ``k`` and ``m`` when
    it is harmonic; ``depth`` and ``transition`` always."""

    depth: IntRange
    growth: IntRange
    k: IntRange
    m: tuple[float, ...]
    transition: IntRange
    downsample: bool

    def to_dict(self) -> dict[str, Any]:
        def as_list(r: IntRange) -> list[int]:
            return [r.low, r.high, r.step]

        return {
            "depth": as_list(self.depth),
            "growth": as_list(self.growth),
            "k": as_list(self.k),
            "m": list(self.m),
            "transition": as_list(self.transition),
            "downsample": self.downsample,
        }


# How trials encode a config (space.sampling): 1 conditional parameters (growth only for
# dense stages, k and m only for harmonic ones); 2 the same parameters in every trial.
SPACE_VERSION = 2


@dataclass(frozen=True)
class SearchSpace:
    """Everything the sampler may vary, and the constants it may not."""

    stages: tuple[StageSpace, ...]
    threshold: IntRange
    stem: tuple[int, int] = DEFAULT_STEM
    bottleneck: int = DEFAULT_BOTTLENECK
    num_classes: int = DEFAULT_NUM_CLASSES
    version: int = SPACE_VERSION  # of the parameter encoding; older studies record 1

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("the space needs at least one stage")
        if self.threshold.low < 0 or self.threshold.high > len(self.stages):
            raise ValueError(
                f"threshold range {self.threshold.describe()} must lie within "
                f"[0, {len(self.stages)}] (the number of stages)"
            )
        for index, stage in enumerate(self.stages):
            low, high = MULTIPLIER_RANGE
            if not stage.m or any(not low <= value <= high for value in stage.m):
                raise ValueError(
                    f"stages[{index}].m must be a non-empty list within [{low}, {high}]"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "threshold": [self.threshold.low, self.threshold.high, self.threshold.step],
            "stem": list(self.stem),
            "bottleneck": self.bottleneck,
            "num_classes": self.num_classes,
            "stages": [stage.to_dict() for stage in self.stages],
        }

    def override(self, data: Mapping[str, Any]) -> SearchSpace:
        """A copy with the keys in ``data`` replaced (TOML/JSON layout of ``to_dict``).

        ``stages`` tables apply to the stages in order and replace only the keys they
        name; stages without a table keep their ranges. A longer list adds stages (every
        key then required).
        """
        allowed = {"threshold", "stem", "bottleneck", "num_classes", "stages"}  # not version
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"space: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        merged = self.to_dict()
        for key in ("threshold", "stem", "bottleneck", "num_classes"):
            if key in data:
                merged[key] = data[key]
        if "stages" in data:
            stages = data["stages"]
            if not isinstance(stages, list) or not stages:
                raise ValueError("space.stages must be a non-empty list of tables")
            base = merged["stages"]
            merged["stages"] = [
                {
                    **(base[index] if index < len(base) else {}),
                    **(dict(stages[index]) if index < len(stages) else {}),
                }
                for index in range(max(len(base), len(stages)))
            ]
        return SearchSpace.from_dict(merged)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        stages = []
        for index, table in enumerate(data["stages"]):
            where = f"space.stages[{index}]"
            keys = {"depth", "growth", "k", "m", "transition", "downsample"}
            unknown = sorted(set(table) - keys)
            missing = sorted(keys - set(table))
            if unknown or missing:
                raise ValueError(f"{where}: unknown key(s) {unknown}, missing key(s) {missing}")
            m = table["m"]
            if not isinstance(m, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in m
            ):
                raise ValueError(f"{where}.m must be a list of numbers, got {m!r}")
            if not isinstance(table["downsample"], bool):
                raise ValueError(f"{where}.downsample must be true or false")
            stages.append(
                StageSpace(
                    depth=IntRange.parse(table["depth"], f"{where}.depth"),
                    growth=IntRange.parse(table["growth"], f"{where}.growth"),
                    k=IntRange.parse(table["k"], f"{where}.k"),
                    m=tuple(float(v) for v in m),
                    transition=IntRange.parse(table["transition"], f"{where}.transition"),
                    downsample=table["downsample"],
                )
            )
        return cls(
            stages=tuple(stages),
            threshold=IntRange.parse(data["threshold"], "space.threshold"),
            stem=tuple(data.get("stem", DEFAULT_STEM)),
            bottleneck=data.get("bottleneck", DEFAULT_BOTTLENECK),
            num_classes=data.get("num_classes", DEFAULT_NUM_CLASSES),
            version=data.get("version", 1),  # spaces were recorded without one before 2
        )

    def load_overrides(self, path: str | Path) -> SearchSpace:
        """Apply a TOML file of overrides; ValueError names the file and the problem."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read space file {path}: {error}") from None
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from None
        try:
            return self.override(data)
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"{path}: {error}") from None


def _stage(
    depth: tuple[int, int],
    k: tuple[int, int, int],
    transition: tuple[int, int],
    downsample: bool,
) -> StageSpace:
    return StageSpace(
        depth=IntRange(*depth),
        growth=IntRange(16, 48, 8),
        k=IntRange(*k),
        m=(1.5, 1.6, 1.7, 1.8),
        transition=IntRange(transition[0], transition[1], 32),
        downsample=downsample,
    )


# ThreshNet's five-stage skeleton (pools after stages 1, 2 and 4, as in 28/79/95). The
# ranges bracket the published models: 28, 79 and 95 are exact points of this space.
DEFAULT_SPACE = SearchSpace(
    stages=(
        _stage((1, 12), (8, 48, 2), (64, 512), True),
        _stage((1, 16), (8, 64, 2), (64, 768), True),
        _stage((1, 20), (8, 64, 2), (128, 768), False),
        _stage((2, 20), (16, 96, 4), (256, 1024), True),
        _stage((1, 8), (64, 256, 16), (256, 1280), False),
    ),
    threshold=IntRange(0, 5),
)
