"""One latency scale per study: the reference network's time, fixed when the study starts.

A trial's latency is timed in rounds paired with the reference network
(threshnet.steady_latency), so its **ratio** to the reference holds still while the
machine's load drifts; its milliseconds do not. A study therefore states every latency
as ratio x one reference time, measured once per device kind (``device_kind``: the
backend, the device's name and, on a CPU, the thread count) on the idle device when the
study starts (the median of ``SCALE_MEASUREMENTS`` steady measurements) and kept in the
manifest: a resumed study, and every node of the same kind, uses the same one. Raw
milliseconds stay in each trial's record beside it. The fastest time this machine measured
while calm (``is_calm``) is also kept in the cache directory (``CALM_TIMES_FILE``), and a
study whose own time is not calm, or runs well slower, takes that one
(``study_reference``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from threshnet.fileio import atomic_write_text
from threshnet.latency import LatencySettings
from threshnet.machine_load import attempts_on, measure_when_calm
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

    results, reading, _ = measure_when_calm(measure_all, attempts=attempts_on(device.type))
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


CALM_TIMES_FILE = "latency-reference.json"  # in the cache directory: calm times per kind
# A reference time is calm when the load monitor saw no oversubscription and its
# measurements agree within this CV: on this project's 2-core VM, one busy process beside
# the measurement left the load monitor quiet but gave 5.40 ms at CV 18.6 % against 4.56 ms
# at CV 2.4 % idle (BENCHMARKS.md, "Latency stability"; the same limit as the final pass's)
CALM_CV = 0.05
# A study takes the machine's calm time instead of the one timed at its start when that
# one is not calm or runs more than this share slower (the study-level target: within 10 %)
SLOWER_THAN_CALM = 0.10


def _calm_key(kind: str) -> str:
    return f"{kind} | torch {torch.__version__}"


def is_calm(reference: ReferenceTime) -> bool:
    """Whether ``reference`` was timed on a calm machine: no oversubscription, and its
    measurements agree (``CALM_CV``)."""
    return _calm(reference.to_dict())


def _calm(entry: dict[str, Any]) -> bool:
    # a kept entry lacking either field comes from no rule of today's: not calm
    return not entry.get("oversubscribed", True) and entry.get("cv", 1.0) <= CALM_CV


def _calm_times(cache_dir: Path) -> dict[str, Any]:
    """The cache file's entries (empty when it is missing or damaged)."""
    try:
        times = json.loads((cache_dir / CALM_TIMES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return times if isinstance(times, dict) else {}


def _calm_entry(times: dict[str, Any], kind: str) -> dict[str, Any] | None:
    found = times.get(_calm_key(kind))
    if not isinstance(found, dict) or not isinstance(found.get("ms"), int | float):
        return None
    return found if _calm(found) else None  # an earlier rule kept any time without load


def calm_reference(cache_dir: Path, kind: str) -> dict[str, Any] | None:
    """The fastest reference time this machine measured for ``kind`` while calm (this
    torch version), or None."""
    return _calm_entry(_calm_times(cache_dir), kind)


def remember_calm_reference(cache_dir: Path, kind: str, reference: ReferenceTime) -> None:
    """Keep ``reference`` for later studies if it is calm and faster than the one kept:
    noise on a shared machine only ever adds time, so the fastest calm time is the
    machine's own."""
    if not is_calm(reference):
        return
    times = _calm_times(cache_dir)
    kept = _calm_entry(times, kind)
    if kept is not None and kept["ms"] <= reference.ms:
        return
    times[_calm_key(kind)] = reference.to_dict()
    with contextlib.suppress(OSError):  # a cache: a study goes on without it
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_dir / CALM_TIMES_FILE, json.dumps(times, indent=1) + "\n")


def study_reference(measured: ReferenceTime, calm: dict[str, Any] | None) -> dict[str, Any]:
    """What a study keeps as its reference time: the one measured now, unless a calm time
    of the same kind is known (``calm``) and the one now is not calm or runs more than
    ``SLOWER_THAN_CALM`` slower (under load even one thread's CPU time runs long, and the
    load monitor does not see all of it: BENCHMARKS.md, "Latency stability")."""
    if calm is None:
        return measured.to_dict()
    slower = measured.ms / calm["ms"] - 1
    if is_calm(measured) and slower <= SLOWER_THAN_CALM:
        return measured.to_dict()
    why = []
    if measured.oversubscribed:
        why.append(f"with {measured.load}")
    if measured.cv > CALM_CV:
        why.append(f"CV {measured.cv:.1%} over its {measured.measurements} measurements")
    if slower > SLOWER_THAN_CALM:
        why.append(f"{slower:.0%} slower than calm")
    return {
        **calm,
        "source": f"this machine when calm ({calm.get('measured_at', '?')}); timed "
        f"{measured.ms:.3f} ms at the study's start ({'; '.join(why)})",
    }
