"""What the project measured about its proxies' fidelity, for studies that did not check
their own: the case studies' results (``bench/case_study.py``) keyed by the proxy they
checked, shipped as ``measured_fidelity.json`` beside this module.

A study's proxy matches a measurement when everything that shapes its accuracies is the
same: the training recipe (not the device-only settings), the split and image caps, and
the data (the bundled subset, or the whole of CIFAR-10).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from threshnet.fileio import atomic_write_text

MEASURED_FILE = Path(__file__).with_name("measured_fidelity.json")
BUNDLED_SUBSET = "cifar10-subset.tar.xz"  # threshnet.training.bundled's archive name
DEVICE_ONLY = ("eval_batch_size", "amp", "channels_last")  # change speed, not the ranking
BUNDLED = "bundled subset"  # data_kind of the subset that ships with the package
SPLIT_KEYS = ("val_size", "max_val_images", "split_seed", "train_fraction", "max_train_images")


def data_kind(data_dir: str | None) -> str:
    """'bundled subset', 'CIFAR-10' (torchvision's or a copy named cifar10*), else 'other'."""
    if data_dir is None:
        return "CIFAR-10"
    name = Path(data_dir).name
    if name == BUNDLED_SUBSET:
        return BUNDLED
    return "CIFAR-10" if name.lower().startswith(("cifar10", "cifar-10")) else "other"


def proxy_signature(settings: dict[str, Any]) -> dict[str, Any]:
    """What of a study's settings (the manifest's) decides its proxy accuracies."""
    train = {k: v for k, v in settings["train"].items() if k not in DEVICE_ONLY}
    split = {k: settings.get(k) for k in SPLIT_KEYS}
    return json.loads(
        json.dumps({"train": train, **split, "data": data_kind(settings.get("data_dir"))})
    )


@dataclass(frozen=True)
class Measurement:
    """One case study's fidelity figures for the proxy it checked."""

    name: str
    proxy: dict[str, Any]  # proxy_signature of the measured study
    proxy_text: str  # e.g. "3 epochs on 3,000 images of the bundled subset"
    long: str  # the long budget, in words
    configs: int
    tau: tuple[float, float, float]  # Kendall tau, 95 % interval
    ceiling: tuple[float, float, float] | None  # two seeds of the proxy
    advice: str
    source: str  # where the figures and the command are
    note: str = ""  # what the figures do not say, in a sentence
    # a budget of the case study's ladder ("2xall"), not the proxy its search ran; "" for
    # the search's own proxy
    rung: str = ""
    # the name of the measurement of the budget the case study's advice picks ("" none)
    advised: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        ceiling = data.get("ceiling")
        return cls(
            name=str(data["name"]),
            proxy=dict(data["proxy"]),
            proxy_text=str(data["proxy_text"]),
            long=str(data["long"]),
            configs=int(data["configs"]),
            tau=tuple(float(v) for v in data["tau"]),  # type: ignore[arg-type]
            ceiling=None if ceiling is None else tuple(float(v) for v in ceiling),  # type: ignore[arg-type]
            advice=str(data["advice"]),
            source=str(data["source"]),
            note=str(data.get("note", "")),
            rung=str(data.get("rung", "")),
            advised=str(data.get("advised", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The figures in one sentence."""
        tau, low, high = self.tau
        text = (
            f"{self.proxy_text} ranked {self.configs} configs at Kendall tau {tau:.2f} "
            f"[{low:.2f}, {high:.2f}] against {self.long}"
        )
        if self.ceiling is not None:
            value, low, high = self.ceiling
            text += f" (two seeds of the proxy agree at {value:.2f} [{low:.2f}, {high:.2f}])"
        return f"{text}; {self.source}" + (f". {self.note}" if self.note else "")


def read_measurements(path: Path = MEASURED_FILE) -> list[Measurement]:
    """The shipped measurements (none when the file is absent)."""
    if not path.exists():
        return []
    return [Measurement.from_dict(item) for item in json.loads(path.read_text())]


def measurement_for(
    settings: dict[str, Any], measurements: list[Measurement] | None = None
) -> Measurement | None:
    """The measurement of exactly this study's proxy, if one was made."""
    signature = proxy_signature(settings)
    for measured in read_measurements() if measurements is None else measurements:
        if measured.proxy == signature:
            return measured
    return None


def record_measurements(
    measured: list[Measurement], path: Path = MEASURED_FILE, *, replacing: str | None = None
) -> None:
    """Add ``measured`` to the shipped file, replacing earlier ones of the same names
    (and, with ``replacing``, every earlier one of that case study: its search's proxy,
    named ``replacing``, and its rungs, ``replacing`` followed by the rung)."""
    names = {m.name for m in measured}

    def replaced(m: Measurement) -> bool:
        of_case_study = m.name == replacing or (bool(m.rung) and m.name == f"{replacing} {m.rung}")
        return m.name in names or (replacing is not None and of_case_study)

    kept = [m for m in read_measurements(path) if not replaced(m)]
    items = [m.to_dict() for m in sorted([*kept, *measured], key=lambda m: m.name)]
    atomic_write_text(path, json.dumps(items, indent=1) + "\n")


def unchecked_text(
    settings: dict[str, Any], study_root: Path, measurements: list[Measurement] | None = None
) -> str:
    """What a report says about the proxy of a study without its own fidelity check."""
    command = f"python -m search.fidelity {study_root}"
    measurements = read_measurements() if measurements is None else measurements
    measured = measurement_for(settings, measurements)
    if measured is not None:
        return (
            f"Not checked in this study ({command} checks it); this proxy was measured "
            f"in the project's case study: {measured.line()}. {measured.advice}"
        )
    known = "; ".join(f"{m.name}: {m.line()}" for m in measurements if not m.rung)
    return f"Not checked, and not measured for this proxy: {command} measures it." + (
        f" Measured for other proxies: {known}." if known else ""
    )
