"""ThreshNet configuration: frozen dataclasses, validation and JSON round trips.

A config is data. The same JSON flows from a search trial to the export and to full
training. Constructing a config validates it, so an invalid config never exists; the
error names the field, the value and the allowed range.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from threshnet.fileio import atomic_write_text

SCHEMA_VERSION = 1
CONFIG_KIND = "threshnet-config"

MIN_STAGES, MAX_STAGES = 1, 8
DEPTH_RANGE = (1, 128)
GROWTH_RANGE = (1, 1024)
WIDTH_RANGE = (1, 8192)
MULTIPLIER_RANGE = (1.0, 2.5)
CLASSES_RANGE = (2, 100_000)
DEFAULT_MULTIPLIER = 1.7  # HarDNet's and ThreshNet's m; no effect on dense stages
DEFAULT_STEM = (32, 64)  # ThreshNet's and HarDNet's stem widths
DEFAULT_BOTTLENECK = 128  # the 1x1 width inside every dense unit
DEFAULT_NUM_CLASSES = 10  # CIFAR-10


def _check_int(field: str, value: Any, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an integer in [{bounds[0]}, {bounds[1]}], got {value!r}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{field}={value} is out of range: allowed [{bounds[0]}, {bounds[1]}]")
    return value


def _check_float(field: str, value: Any, bounds: tuple[float, float]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a number in [{bounds[0]}, {bounds[1]}], got {value!r}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{field}={value} is out of range: allowed [{bounds[0]}, {bounds[1]}]")
    return float(value)


def _check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be true or false, got {value!r}")
    return value


def check_keys(where: str, data: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    """Raise ValueError naming unknown or missing keys of the JSON object ``data``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional))
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {allowed}"
        )
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")


def dataclass_kwargs(
    cls: type, data: Mapping[str, Any], where: str, *, ignore: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The keyword arguments of dataclass ``cls`` in ``data`` (keys in ``ignore`` dropped);
    ValueError names unknown keys and missing ones that have no default."""
    names = {field.name for field in fields(cls)}
    required = {
        field.name
        for field in fields(cls)
        if field.default is MISSING and field.default_factory is MISSING
    }
    check_keys(where, data, required, (names - required) | ignore)
    return {key: value for key, value in data.items() if key not in ignore}


@dataclass(frozen=True)
class StageConfig:
    """One stage: a dense or harmonic block, then a 1x1 transition and an optional pool.

    Whether the block is dense or harmonic is decided by the network's threshold, not
    here. ``growth`` is the dense growth rate for a dense block and the base width k of
    a harmonic block; ``multiplier`` is the harmonic width multiplier m and does not
    affect a dense block.
    """

    depth: int
    growth: int
    transition: int
    downsample: bool
    multiplier: float = DEFAULT_MULTIPLIER

    def validate(self, where: str = "stage") -> None:
        """Raise ValueError naming the field when a value is out of range."""
        _check_int(f"{where}.depth", self.depth, DEPTH_RANGE)
        _check_int(f"{where}.growth", self.growth, GROWTH_RANGE)
        _check_int(f"{where}.transition", self.transition, WIDTH_RANGE)
        _check_bool(f"{where}.downsample", self.downsample)
        _check_float(f"{where}.multiplier", self.multiplier, MULTIPLIER_RANGE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "growth": self.growth,
            "multiplier": self.multiplier,
            "transition": self.transition,
            "downsample": self.downsample,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "stage") -> StageConfig:
        check_keys(where, data, {"depth", "growth", "transition", "downsample"}, {"multiplier"})
        stage = cls(
            depth=data["depth"],
            growth=data["growth"],
            transition=data["transition"],
            downsample=data["downsample"],
            multiplier=data.get("multiplier", DEFAULT_MULTIPLIER),
        )
        stage.validate(where)
        return stage


@dataclass(frozen=True)
class ThreshNetConfig:
    """A ThreshNet architecture.

    ``threshold`` is the number of leading dense stages: stage i is dense when
    ``i < threshold`` and harmonic otherwise (the paper's switch is monotone). The stem
    is CBR(3x3, s2) -> CBR(3x3) -> max-pool(3, s2); ``bottleneck`` is the constant 1x1
    width inside every dense unit (128 in ThreshNet).
    """

    stages: tuple[StageConfig, ...]
    threshold: int
    stem: tuple[int, int] = DEFAULT_STEM
    bottleneck: int = DEFAULT_BOTTLENECK
    num_classes: int = DEFAULT_NUM_CLASSES

    def __post_init__(self) -> None:
        if isinstance(self.stages, Sequence) and not isinstance(self.stages, str):
            object.__setattr__(self, "stages", tuple(self.stages))
        if isinstance(self.stem, Sequence) and not isinstance(self.stem, str):
            object.__setattr__(self, "stem", tuple(self.stem))
        self.validate()

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def is_dense(self, stage_index: int) -> bool:
        """True when stage ``stage_index`` uses dense connections."""
        return stage_index < self.threshold

    @property
    def depth(self) -> int:
        """Conv layers as the ThreshNet names count them (2 per dense unit, FC excluded)."""
        units = sum(
            (2 if self.is_dense(i) else 1) * stage.depth for i, stage in enumerate(self.stages)
        )
        return len(self.stem) + units + self.num_stages

    def validate(self, input_size: int | None = None) -> None:
        """Raise ValueError on any out-of-range value.

        With ``input_size`` it also checks that no pooling step shrinks the feature map
        below 1x1.
        """
        if not isinstance(self.stages, tuple) or not all(
            isinstance(stage, StageConfig) for stage in self.stages
        ):
            raise ValueError("stages must be a list of StageConfig")
        if not MIN_STAGES <= len(self.stages) <= MAX_STAGES:
            raise ValueError(
                f"stages has {len(self.stages)} entries: allowed [{MIN_STAGES}, {MAX_STAGES}]"
            )
        for index, stage in enumerate(self.stages):
            stage.validate(f"stages[{index}]")
        _check_int("threshold", self.threshold, (0, len(self.stages)))
        if not isinstance(self.stem, tuple) or len(self.stem) != 2:
            raise ValueError(f"stem must be two widths [first, second], got {self.stem!r}")
        for index, width in enumerate(self.stem):
            _check_int(f"stem[{index}]", width, WIDTH_RANGE)
        _check_int("bottleneck", self.bottleneck, WIDTH_RANGE)
        _check_int("num_classes", self.num_classes, CLASSES_RANGE)
        if input_size is not None:
            self.feature_sizes(input_size)

    def feature_sizes(self, input_size: int) -> list[int]:
        """Spatial size seen by each stage's block for a square ``input_size`` input.

        Raises ValueError when the input is too small for the stem or a pool.
        """
        _check_int("input_size", input_size, (1, 4096))
        size = (input_size - 1) // 2 + 1  # 3x3 conv, stride 2, padding 1
        size = (size - 1) // 2 + 1  # 3x3 max-pool, stride 2, padding 1
        sizes = []
        for index, stage in enumerate(self.stages):
            sizes.append(size)
            if stage.downsample:
                if size < 2:
                    raise ValueError(
                        f"stages[{index}].downsample: the feature map is {size}x{size} "
                        f"there at input size {input_size}, so a 2x2 pool would collapse it; "
                        "use a larger input or fewer downsampling stages"
                    )
                size //= 2
        return sizes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with the schema version."""
        return {
            "kind": CONFIG_KIND,
            "schema_version": SCHEMA_VERSION,
            "threshold": self.threshold,
            "stem": list(self.stem),
            "bottleneck": self.bottleneck,
            "num_classes": self.num_classes,
            "stages": [stage.to_dict() for stage in self.stages],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThreshNetConfig:
        """Parse and validate; raises ValueError naming the offending key."""
        check_keys(
            "config",
            data,
            {"schema_version", "threshold", "stages"},
            {"kind", "stem", "bottleneck", "num_classes"},
        )
        if data.get("kind", CONFIG_KIND) != CONFIG_KIND:
            raise ValueError(f"config.kind must be {CONFIG_KIND!r}, got {data['kind']!r}")
        if data["schema_version"] != SCHEMA_VERSION:
            raise ValueError(
                f"config.schema_version={data['schema_version']!r} is not supported "
                f"(this version reads {SCHEMA_VERSION})"
            )
        stages = data["stages"]
        if not isinstance(stages, list):
            raise ValueError(f"config.stages must be a list, got {type(stages).__name__}")
        if not MIN_STAGES <= len(stages) <= MAX_STAGES:
            raise ValueError(
                f"config.stages has {len(stages)} entries: allowed [{MIN_STAGES}, {MAX_STAGES}]"
            )
        stem = data.get("stem", list(DEFAULT_STEM))
        if not isinstance(stem, list):
            raise ValueError(f"config.stem must be a list of two widths, got {stem!r}")
        return cls(
            stages=tuple(
                StageConfig.from_dict(stage, f"stages[{index}]")
                for index, stage in enumerate(stages)
            ),
            threshold=data["threshold"],
            stem=tuple(stem),
            bottleneck=data.get("bottleneck", DEFAULT_BOTTLENECK),
            num_classes=data.get("num_classes", DEFAULT_NUM_CLASSES),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ThreshNetConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"config is not valid JSON: {error}") from None
        except RecursionError:
            raise ValueError("config is nested too deeply to be a ThreshNet config") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON atomically (temp file, then rename)."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ThreshNetConfig:
        """Read a JSON config; ValueError names the file and the problem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read config {path}: {error}") from None
        try:
            return cls.from_json(text)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
