"""The study's reference time: a calm one is kept per machine and preferred under load."""

from __future__ import annotations

from pathlib import Path

import torch

from threshnet.latency_scale import (
    CALM_TIMES_FILE,
    ReferenceTime,
    calm_reference,
    device_kind,
    remember_calm_reference,
    study_reference,
)

KIND = device_kind("eager", torch.device("cpu"), "Some CPU", 1)


def _reference(ms: float, *, oversubscribed: bool) -> ReferenceTime:
    return ReferenceTime(
        ms=ms,
        cv=0.01,
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
