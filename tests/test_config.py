"""Config validation, JSON round trips and atomic saves."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from threshnet.config import SCHEMA_VERSION, StageConfig, ThreshNetConfig
from threshnet.presets import PRESETS, THRESHNET79


def _valid() -> dict[str, Any]:
    return THRESHNET79.to_dict()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip_is_identical(name: str, tmp_path: Path) -> None:
    config = PRESETS[name]
    assert ThreshNetConfig.from_dict(config.to_dict()) == config
    path = config.save(tmp_path / f"{name}.json")
    assert ThreshNetConfig.load(path) == config
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.json"]  # no temp file left


def test_sequences_are_frozen_into_tuples() -> None:
    config = ThreshNetConfig(stages=list(THRESHNET79.stages), threshold=3, stem=[32, 64])
    assert config == THRESHNET79
    assert hash(config) == hash(THRESHNET79)


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(_valid())
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


_DELETE = object()

BAD_DICTS = [
    ("stages.0.depth", 0, r"stages\[0\]\.depth=0 is out of range: allowed \[1, 128\]"),
    ("stages.1.depth", -3, r"stages\[1\]\.depth=-3"),
    ("stages.2.depth", 100000, r"stages\[2\]\.depth=100000 is out of range"),
    ("stages.0.growth", 0, r"stages\[0\]\.growth=0"),
    ("stages.3.transition", -1, r"stages\[3\]\.transition=-1"),
    ("stages.4.multiplier", 0.5, r"stages\[4\]\.multiplier=0.5 is out of range"),
    ("stages.4.multiplier", float("nan"), r"stages\[4\]\.multiplier must be a number"),
    ("stages.0.depth", "6", r"stages\[0\]\.depth must be an integer"),
    ("stages.0.depth", 6.0, r"stages\[0\]\.depth must be an integer"),
    ("stages.0.depth", True, r"stages\[0\]\.depth must be an integer"),
    ("stages.0.downsample", 1, r"stages\[0\]\.downsample must be true or false"),
    ("stages.0.colour", "red", r"stages\[0\]: unknown key\(s\) 'colour'"),
    ("stages.0.depth", _DELETE, r"stages\[0\]: missing key\(s\) 'depth'"),
    ("threshold", 6, r"threshold=6 is out of range: allowed \[0, 5\]"),
    ("threshold", -1, r"threshold=-1 is out of range"),
    ("stages", [], r"stages has 0 entries: allowed \[1, 8\]"),
    ("stages", [_valid()["stages"][0]] * 9, r"stages has 9 entries: allowed \[1, 8\]"),
    ("stages", "abc", r"config\.stages must be a list"),
    ("stem", [32], r"stem must be two widths"),
    ("stem", [0, 64], r"stem\[0\]=0 is out of range"),
    ("bottleneck", 0, r"bottleneck=0 is out of range"),
    ("num_classes", 1, r"num_classes=1 is out of range: allowed \[2, 100000\]"),
    ("schema_version", 2, r"schema_version=2 is not supported"),
    ("schema_version", _DELETE, r"missing key\(s\) 'schema_version'"),
    ("kind", "other", r"config\.kind must be 'threshnet-config'"),
    ("extra", 1, r"config: unknown key\(s\) 'extra'"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_DICTS)
def test_bad_dicts_are_rejected_with_the_field_named(path: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ThreshNetConfig.from_dict(_mutate(path, value))


def test_not_a_json_object() -> None:
    with pytest.raises(ValueError, match="config must be a JSON object"):
        ThreshNetConfig.from_json("[1, 2]")
    with pytest.raises(ValueError, match="not valid JSON"):
        ThreshNetConfig.from_json("{")


def test_constructor_validates_too() -> None:
    with pytest.raises(ValueError, match=r"stages\[0\]\.depth=0"):
        ThreshNetConfig(stages=(StageConfig(0, 32, 64, True),), threshold=1)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_mutate("threshold", 9)))
    with pytest.raises(ValueError, match=r"bad\.json: threshold=9"):
        ThreshNetConfig.load(path)
    with pytest.raises(ValueError, match="cannot read config"):
        ThreshNetConfig.load(tmp_path / "missing.json")


def test_failed_save_keeps_the_existing_file(tmp_path: Path) -> None:
    path = THRESHNET79.save(tmp_path / "c.json")
    before = path.read_bytes()
    with pytest.raises(OSError):
        THRESHNET79.save(tmp_path / "no-such-dir" / "c.json")
    assert path.read_bytes() == before


@pytest.mark.parametrize(("input_size", "ok"), [(32, True), (29, True), (28, False), (8, False)])
def test_spatial_collapse_is_rejected(input_size: int, ok: bool) -> None:
    if ok:
        THRESHNET79.validate(input_size=input_size)
    else:
        with pytest.raises(ValueError, match=r"stages\[\d\]\.downsample: the feature map is 1x1"):
            THRESHNET79.validate(input_size=input_size)


def test_feature_sizes_follow_the_spec() -> None:
    assert THRESHNET79.feature_sizes(32) == [8, 4, 2, 2, 1]
    assert THRESHNET79.feature_sizes(224) == [56, 28, 14, 14, 7]
