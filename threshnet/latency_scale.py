"""One latency scale per study: the reference network's time, fixed when the study starts.

A trial's latency is timed in rounds paired with the reference network
(threshnet.steady_latency), so its **ratio** to the reference holds still while the
machine's load drifts; its milliseconds do not. A study therefore states every latency
as ratio x one reference time, measured once per device kind (``device_kind``: the
backend, the device's name and, on a CPU, the thread count) on the idle device when the
study starts (the median of ``SCALE_MEASUREMENTS`` steady measurements) and kept in the
manifest: a resumed study, and every node of the same kind, uses the same one. Raw
milliseconds stay in each trial's record beside it.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from threshnet.latency import LatencySettings
from threshnet.machine_load import measure_when_calm
from threshnet.steady_latency import SteadyLatency, measure_steady_latency

if TYPE_CHECKING:
    from threshnet.steady_latency import Network

SCALE_MEASUREMENTS = 5


def device_kind(backend: str, device: torch.device, name: str, threads: int | None) -> str:
    """The key of a reference time: what runs the passes, on what, with how many threads
    (a CPU's time depends on its thread count; a GPU's does not)."""
    where = f"{backend} on {device.type} {name}"
    if device.type == "cpu":
        return f"{where}, {threads} thread{'s' if threads != 1 else ''}"
    return where


@dataclass(frozen=True)
class ReferenceTime:
    """The reference network's time on one device kind, as a study keeps it."""

    ms: float  # median over the measurements of each one's steady figure (by ``clock``)
    cv: float  # coefficient of variation over the measurements
    measurements: int
    rounds: int  # rounds per measurement
    load: str  # the machine's load while measured (threshnet.machine_load)
    oversubscribed: bool  # still oversubscribed after the retries
    source: str  # e.g. "idle device at study start"
    measured_at: str
    clock: str = "wall"  # threshnet.steady_latency.CLOCKS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_reference_time(
    reference: Network,
    *,
    input_size: int,
    device: torch.device,
    settings: LatencySettings,
    rounds: int,
    source: str,
    clock: str = "wall",
    measurements: int = SCALE_MEASUREMENTS,
) -> ReferenceTime:
    """Time ``reference`` ``measurements`` times by the steady protocol (paired with
    itself, by ``clock``), retried while the machine is oversubscribed; their median."""

    def measure_all() -> list[SteadyLatency]:
        return [
            measure_steady_latency(
                reference,
                reference,
                input_size=input_size,
                device=device,
                settings=settings,
                rounds=rounds,
                clock=clock,
            )
            for _ in range(measurements)
        ]

    results, reading, _ = measure_when_calm(measure_all)
    times = [result.reference_ms for result in results]
    return ReferenceTime(
        ms=statistics.median(times),
        cv=statistics.stdev(times) / statistics.fmean(times) if len(times) > 1 else 0.0,
        measurements=len(times),
        rounds=rounds,
        load=reading.describe(),
        oversubscribed=reading.oversubscribed,
        source=source,
        measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        clock=results[0].clock,
    )
