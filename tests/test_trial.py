"""One trial in-process: failures recorded, every key in the schema."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from search.setup.settings import SMOKE_SETTINGS, StudySettings
from search.worker.context import TrialContext
from search.worker.fields import NUMBER_KEY
from search.worker.trial import evaluate_trial
from space import CostCaps, SearchSpace, config_to_params
from studies import schema
from threshnet.config import StageConfig, ThreshNetConfig

# A two-stage space small enough to train in a second on CPU.
_STAGE = {"depth": [1, 3], "growth": [8, 16, 8], "k": [8, 16, 8], "m": [1.7]}
TINY_SPACE = SearchSpace.from_dict(
    {
        "threshold": [0, 2],
        "stem": [8, 16],
        "bottleneck": 16,
        "num_classes": 3,
        "stages": [
            {**_STAGE, "transition": [16, 32, 16], "downsample": True},
            {**_STAGE, "transition": [16, 32, 16], "downsample": False},
        ],
    }
)
TINY = ThreshNetConfig(
    stages=(StageConfig(2, 8, 16, True), StageConfig(2, 8, 32, False)),
    threshold=1,
    stem=(8, 16),
    bottleneck=16,
    num_classes=3,
)
ALLOWED_KEYS = set(schema.RECORD_FIELDS) | {"number"}


def _context(data_dir: Path, cache: Path, **changes: object) -> TrialContext:
    changes = {"val_size": 9, **changes}
    settings = dataclasses.replace(
        SMOKE_SETTINGS, space=TINY_SPACE, data_dir=str(data_dir), **changes
    )
    assert isinstance(settings, StudySettings)
    return TrialContext(settings=settings, cache_dir=str(cache), train_cache=None, cpus_per_trial=1)


def _params(number: int) -> dict[str, object]:
    return {**config_to_params(TINY, TINY_SPACE), NUMBER_KEY: number}


def test_a_failing_trial_returns_its_reason_instead_of_raising(tmp_path: Path) -> None:
    context = _context(tmp_path / "no-such-data", tmp_path / "cache")
    record = evaluate_trial(_params(2), context)
    assert record["status"] == "failed"
    assert "DataError" in record["error"] and "does not exist" in record["error"]
    assert record["trial_seconds"] >= 0 and record["device"] == "cpu"
    assert set(record) <= ALLOWED_KEYS


@pytest.mark.parametrize("batch", [None, 4])
def test_a_finished_trial_records_only_schema_fields(
    tiny_folder: Path, tmp_path: Path, batch: int | None
) -> None:
    latency = dataclasses.replace(SMOKE_SETTINGS.latency, batch_size=batch)
    context = _context(tiny_folder, tmp_path / "cache", latency=latency)
    record = evaluate_trial(_params(0), context)
    assert record["status"] == "ok", record["error"]
    assert 0.0 <= record["val_acc"] <= 1.0 and record["latency_ms"] > 0
    assert record["epochs"] == SMOKE_SETTINGS.train.epochs and record["latency_threads"] == 1
    assert ("batch_latency_ms" in record) == (batch is not None)
    assert set(record) <= ALLOWED_KEYS
    for key, value in record.items():  # each value has the type the schema declares
        kind = schema.RECORD_FIELDS.get(key, int)
        assert isinstance(value, kind), (key, value)


def test_a_warm_worker_keeps_its_data_for_the_next_trial(tiny_folder: Path, tmp_path: Path) -> None:
    data = tiny_folder
    context = _context(data, tmp_path / "cache")
    first = evaluate_trial(_params(0), context)
    assert first["status"] == "ok", first["error"]
    shutil.rmtree(data)  # the source and its decoded cache are gone: nothing to reload
    shutil.rmtree(tmp_path / "cache")
    second = evaluate_trial(_params(1), context)
    assert second["status"] == "ok", second["error"]
    assert second["worker_trial"] == first["worker_trial"] + 1
    assert second["setup_seconds"] >= 0 and second["latency_seconds"] > 0
    other_split = _context(data, tmp_path / "cache", val_size=6)  # another study's data
    reloaded = evaluate_trial(_params(2), other_split)
    assert reloaded["status"] == "failed" and "does not exist" in reloaded["error"]


def test_a_config_over_the_latency_cap_is_infeasible_and_never_trained(tmp_path: Path) -> None:
    context = _context(
        tmp_path / "no-such-data",  # never read: the trial stops before the data
        tmp_path / "cache",
        caps=CostCaps(max_latency_ms=1e-6),
    )
    record = evaluate_trial(_params(3), context)
    assert record["status"] == "infeasible", record["error"]
    assert "> max 1e-06 ms" in record["error"] and record["latency_ms"] > 0
    assert record["latency_ratio"] > 0 and record["latency_rounds"] >= 1
    assert "val_acc" not in record and "train_seconds" not in record
    assert set(record) <= ALLOWED_KEYS


def test_a_study_from_before_rounds_keeps_measuring_one_run(
    tiny_folder: Path, tmp_path: Path
) -> None:
    latency = dataclasses.replace(SMOKE_SETTINGS.latency, rounds=0)  # as migrated from v2
    record = evaluate_trial(_params(4), _context(tiny_folder, tmp_path / "cache", latency=latency))
    assert record["status"] == "ok", record["error"]
    assert record["latency_repeats"] == SMOKE_SETTINGS.latency.repeats
    assert "latency_ratio" not in record and "latency_rounds" not in record
