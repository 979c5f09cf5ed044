"""The study's reference time: the fastest calm one is kept per machine and preferred when
the one timed at a study's start is not calm or runs well slower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from search.driver.latency_scale import scale_line
from search.setup.settings import SMOKE_SETTINGS
from search.tasks.latency_scale import START_SOURCE, _reference_time_on_worker
from search.worker.context import TrialContext
from threshnet.latency_scale import (
    CALM_TIMES_FILE,
    ReferenceTime,
    calm_reference,
    device_kind,
    is_calm,
    remember_calm_reference,
    study_reference,
)

KIND = device_kind("eager", torch.device("cpu"), "Some CPU", 1)


def _reference(ms: float, *, oversubscribed: bool, cv: float = 0.01) -> ReferenceTime:
    return ReferenceTime(
        ms=ms,
        cv=cv,
        measurements=5,
        rounds=5,
        load="load 3.2 on 2 CPUs, CPU pressure 51%, steal 0%" if oversubscribed else "calm",
        oversubscribed=oversubscribed,
        source="the idle device when the study started",
        measured_at="2026-12-06T17:35:45+00:00",
        clock="cpu",
    )


def test_a_kind_names_backend_device_and_cpu_threads() -> None:
    assert KIND == "eager on cpu Some CPU, 1 thread"
    assert device_kind("onnxruntime", torch.device("cpu"), "X", 2).endswith("X, 2 threads")
    assert device_kind("eager", torch.device("cuda"), "H100", None) == "eager on cuda H100"


def test_a_study_started_under_load_takes_the_machines_calm_time(tmp_path: Path) -> None:
    loaded = _reference(8.73, oversubscribed=True)
    assert calm_reference(tmp_path, KIND) is None
    assert study_reference(loaded, None) == loaded.to_dict()  # nothing better known

    calm = _reference(5.26, oversubscribed=False)
    remember_calm_reference(tmp_path, KIND, calm)
    kept = study_reference(loaded, calm_reference(tmp_path, KIND))
    assert kept["ms"] == 5.26 and kept["clock"] == "cpu"
    assert "this machine when calm" in kept["source"] and "8.730 ms" in kept["source"]
    # a calm measurement now is the study's own
    assert study_reference(calm, calm_reference(tmp_path, KIND))["ms"] == 5.26
    assert calm_reference(tmp_path, "eager on cpu Other CPU, 1 thread") is None


def test_a_damaged_cache_is_no_reference_and_is_replaced(tmp_path: Path) -> None:
    (tmp_path / CALM_TIMES_FILE).write_text("{not json")
    assert calm_reference(tmp_path, KIND) is None
    remember_calm_reference(tmp_path, KIND, _reference(5.0, oversubscribed=False))
    assert calm_reference(tmp_path, KIND)["ms"] == 5.0


def test_an_unsteady_or_slow_time_is_not_the_studys_nor_remembered(tmp_path: Path) -> None:
    idle = _reference(4.56, oversubscribed=False, cv=0.024)
    remember_calm_reference(tmp_path, KIND, idle)
    # measured on this VM with one busy process: the load monitor saw nothing (pressure 3 %)
    beside_one = _reference(5.40, oversubscribed=False, cv=0.186)
    assert not is_calm(beside_one)
    kept = study_reference(beside_one, calm_reference(tmp_path, KIND))
    assert kept["ms"] == 4.56
    assert "CV 18.6% over its 5 measurements" in kept["source"]
    remember_calm_reference(tmp_path, KIND, beside_one)
    assert calm_reference(tmp_path, KIND)["ms"] == 4.56  # not written over

    steady_but_slow = _reference(5.20, oversubscribed=False)  # 14 % slower
    kept = study_reference(steady_but_slow, calm_reference(tmp_path, KIND))
    assert kept["ms"] == 4.56 and "14% slower than calm" in kept["source"]
    remember_calm_reference(tmp_path, KIND, steady_but_slow)
    assert calm_reference(tmp_path, KIND)["ms"] == 4.56  # the fastest calm time is kept

    close = _reference(4.90, oversubscribed=False)  # within 10 %: the study's own
    assert study_reference(close, calm_reference(tmp_path, KIND)) == close.to_dict()
    faster = _reference(4.40, oversubscribed=False)
    assert study_reference(faster, calm_reference(tmp_path, KIND)) == faster.to_dict()
    remember_calm_reference(tmp_path, KIND, faster)
    assert calm_reference(tmp_path, KIND)["ms"] == 4.40


def test_a_kept_time_that_was_not_calm_is_no_reference(tmp_path: Path) -> None:
    # an earlier version kept any time measured without load, however spread
    unsteady = _reference(5.40, oversubscribed=False, cv=0.186)
    (tmp_path / CALM_TIMES_FILE).write_text(
        json.dumps({f"{KIND} | torch {torch.__version__}": unsteady.to_dict()})
    )
    assert calm_reference(tmp_path, KIND) is None
    remember_calm_reference(tmp_path, KIND, _reference(5.9, oversubscribed=False))
    assert calm_reference(tmp_path, KIND)["ms"] == 5.9


def test_the_runs_line_says_where_its_reference_time_came_from() -> None:
    measured = _reference(4.56, oversubscribed=False).to_dict()
    assert scale_line(KIND, measured, measured_now=True).endswith("(measured now)")
    unsteady = _reference(6.50, oversubscribed=False, cv=0.12)
    calm = study_reference(unsteady, _reference(4.56, oversubscribed=False).to_dict())
    line = scale_line(KIND, calm, measured_now=True)
    assert "takes 4.560 ms" in line and "(from this machine when calm (" in line
    assert "timed 6.500 ms at the study's start (CV 12.0%" in line
    assert "(fixed before (" in scale_line(KIND, calm, measured_now=False)


@pytest.mark.slow  # times the reference network (seconds on 2 cores)
def test_a_worker_of_a_kind_the_study_has_timed_reuses_its_time(tmp_path: Path) -> None:
    # The run-start task's own function (search.tasks.latency_scale), in-process: a new
    # study's kind is timed; a resumed run, or another node of that kind, times nothing.
    context = TrialContext(
        settings=SMOKE_SETTINGS, cache_dir=str(tmp_path), train_cache=None, cpus_per_trial=1
    )
    kind, measured = _reference_time_on_worker(context, frozenset())
    assert measured is not None and measured["ms"] > 0
    assert measured["source"] == START_SOURCE or "calm" in measured["source"]
    assert _reference_time_on_worker(context, frozenset({kind})) == (kind, None)
