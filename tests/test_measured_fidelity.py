"""What a report says about a proxy its study did not check: the project's measurement of
the same proxy, matched on everything that shapes the proxy's accuracies."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from search.setup.settings import DEFAULT_SETTINGS, SMOKE_SETTINGS, StudySettings
from search.tasks.retrain import budget_settings
from studies.fidelity import parse_budget
from studies.measured_fidelity import (
    BUNDLED,
    BUNDLED_SUBSET,
    Measurement,
    data_kind,
    measurement_for,
    proxy_signature,
    read_measurements,
    record_measurements,
    unchecked_text,
)
from threshnet.training.bundled import SUBSET_ARCHIVE


def _manifest_settings(settings=SMOKE_SETTINGS, data_dir: str | None = None) -> dict:
    """The settings as a study's manifest stores them."""
    return json.loads(json.dumps(dataclasses.replace(settings, data_dir=data_dir).to_dict()))


def _measurement(settings: dict, name: str = "smoke", tau: float = 0.4) -> Measurement:
    return Measurement(
        name=name,
        proxy=proxy_signature(settings),
        proxy_text="the proxy of 3 epochs",
        long="8xproxy",
        configs=16,
        tau=(tau, 0.1, 0.7),
        ceiling=(0.6, 0.3, 0.8),
        advice="Advice: none meets the rule.",
        source="bench/results/case-study-smoke",
    )


def test_the_bundled_subsets_name_is_the_packages() -> None:
    assert SUBSET_ARCHIVE.name == BUNDLED_SUBSET
    assert data_kind(str(SUBSET_ARCHIVE)) == BUNDLED
    assert data_kind(None) == data_kind("/data/cifar10-jpeg.tar.xz") == "CIFAR-10"
    assert data_kind("/data/imagenette") == "other"


def test_a_signature_ignores_device_settings_and_tells_proxies_apart() -> None:
    smoke = _manifest_settings(data_dir=str(SUBSET_ARCHIVE))
    on_gpu = json.loads(json.dumps(smoke))
    on_gpu["train"].update(amp=False, channels_last=False, eval_batch_size=64)
    assert proxy_signature(on_gpu) == proxy_signature(smoke)
    longer = json.loads(json.dumps(smoke))
    longer["train"]["epochs"] = 4
    other_data = _manifest_settings(data_dir="/elsewhere/cifar10-jpeg.tar.xz")
    default = _manifest_settings(DEFAULT_SETTINGS, data_dir=None)
    signatures = [proxy_signature(s) for s in (smoke, longer, other_data, default)]
    assert all(a != b for i, a in enumerate(signatures) for b in signatures[i + 1 :])


def test_a_recorded_measurement_is_found_for_its_proxy_only(tmp_path: Path) -> None:
    path = tmp_path / "measured.json"
    smoke = _manifest_settings(data_dir=str(SUBSET_ARCHIVE))
    record_measurements([_measurement(smoke, tau=0.1)], path)
    record_measurements([_measurement(smoke, tau=0.4)], path)  # the same name: replaced
    measured = read_measurements(path)
    assert [m.tau[0] for m in measured] == [0.4]
    assert measurement_for(smoke, measured) == measured[0]
    assert measurement_for(_manifest_settings(data_dir=None), measured) is None

    root = tmp_path / "study"
    text = unchecked_text(smoke, root, measured)
    assert "Not checked in this study" in text and f"search.fidelity {root}" in text
    assert "Kendall tau 0.40 [0.10, 0.70] against 8xproxy" in text
    assert "two seeds of the proxy agree at 0.60" in text and "Advice: none" in text
    other = unchecked_text(_manifest_settings(data_dir=None), root, measured)
    assert other.startswith("Not checked, and not measured for this proxy")
    assert "Measured for other proxies: smoke:" in other
    assert unchecked_text(smoke, root, []).endswith("measures it.")


def test_smokes_report_finds_the_measurement_of_its_own_proxy() -> None:
    # A change to --smoke's proxy makes this fail: measure the new one
    # (python bench/case_study.py --scale smoke) rather than show an old figure.
    measured = measurement_for(_manifest_settings(data_dir=str(SUBSET_ARCHIVE)))
    assert measured is not None and measured.name == "smoke"
    assert measured.configs >= 8


def _cpu_case_study_settings() -> dict:
    """The CPU case study's study as its manifest stores it (bench/case_study.py's CPU)."""
    train = dataclasses.replace(DEFAULT_SETTINGS.train, epochs=2, batch_size=128, lr=0.1)
    settings = dataclasses.replace(DEFAULT_SETTINGS, train=train, max_train_images=8000)
    return _manifest_settings(settings, data_dir="/data/cifar10-jpeg.tar.xz")


def test_each_rung_of_the_cpu_case_study_is_found_for_a_study_that_searched_at_it() -> None:
    by_name = {m.name: m for m in read_measurements()}
    searched = _cpu_case_study_settings()
    assert measurement_for(searched) == by_name["cpu"]
    rungs = [m for m in by_name.values() if m.name.startswith("cpu ")]
    assert {m.rung for m in rungs} >= {"1xproxy", "4xproxy"}
    for measured in rungs:
        budget = parse_budget(measured.rung)
        at_rung = json.loads(
            json.dumps(
                budget_settings(
                    StudySettings.from_dict(searched), budget.epochs, budget.images
                ).to_dict()
            )
        )
        assert at_rung["train"]["epochs"] == budget.epochs
        assert measurement_for(at_rung) == measured, measured.name
        text = unchecked_text(at_rung, Path("runs/x"))
        assert f"{measured.proxy_text} ranked {measured.configs} configs" in text
    advised = by_name["cpu"].advised  # the budget the case study's advice picks
    assert advised in by_name, advised


def test_a_case_studys_new_figures_replace_its_old_ones_only(tmp_path: Path) -> None:
    path = tmp_path / "measured.json"
    smoke = _manifest_settings(data_dir=str(SUBSET_ARCHIVE))
    old = [
        _measurement(smoke, "cpu"),
        dataclasses.replace(_measurement(smoke, "cpu 9xall"), rung="9xall"),
        _measurement(smoke, "cpu long"),  # another case study, whose name begins alike
        dataclasses.replace(_measurement(smoke, "cpu long 1xproxy"), rung="1xproxy"),
    ]
    record_measurements(old, path)
    record_measurements([_measurement(smoke, "cpu", tau=0.5)], path, replacing="cpu")
    kept = {m.name: m.tau[0] for m in read_measurements(path)}
    assert kept == {"cpu": 0.5, "cpu long": 0.4, "cpu long 1xproxy": 0.4}


def test_other_proxies_are_listed_by_their_case_studies_not_their_rungs() -> None:
    text = unchecked_text(_manifest_settings(data_dir="/data/imagenette"), Path("runs/x"))
    listed = text.split("Measured for other proxies: ")[1]
    assert "cpu: " in listed and "smoke: " in listed
    assert "cpu 1xproxy" not in listed and "smoke 1xproxy" not in listed


def test_the_default_proxy_is_the_budget_the_cpu_case_study_advises() -> None:
    # Defaults from the measurement: when a new case study advises another budget (or the
    # default changes), this fails until the two agree again.
    by_name = {m.name: m for m in read_measurements()}
    advised = by_name[by_name["cpu"].advised]
    default = _manifest_settings(DEFAULT_SETTINGS, data_dir=None)
    assert measurement_for(default) == advised
    assert "Not checked in this study" in unchecked_text(default, Path("runs/x"))
