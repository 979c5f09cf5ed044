"""The study's latency scale on the driver: kept in the manifest, applied to every record.

The manifest's ``latency_scale`` maps each device kind to its reference time
(threshnet.latency_scale.ReferenceTime as a dict). A new study starts with an empty map,
filled when a run starts (search.tasks.latency_scale); a study made before there was a
scale has no such key, and its latencies stay raw milliseconds. A trial that ran on a
kind the study had not timed measured a reference time on its worker; the first such
time becomes the kind's, and later records of that kind are put on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from search.setup.study import StudyDirectory
from search.tasks.latency_scale import START_SOURCE, time_reference_on_cluster
from search.worker.context import TrialContext
from studies.schema import LATENCY_SCALE_KEY as SCALE_KEY


def scale_times(manifest: dict[str, Any]) -> dict[str, float] | None:
    """Reference ms per device kind; None for a study made before the scale."""
    entries = manifest.get(SCALE_KEY)
    if entries is None:
        return None
    return {kind: float(entry["ms"]) for kind, entry in entries.items()}


def fix_latency_scale(
    directory: StudyDirectory,
    manifest: dict[str, Any],
    context: TrialContext,
    gpus_per_trial: float,
    *,
    say: Callable[[str], None],
    local: bool,
) -> str | None:
    """Time the reference network where the study lacks it for the trials' device kind
    (written into the manifest); a line saying which reference time the run uses. While
    it waits for the device, ``say`` is told for whom (``local``: a local Ray's)."""
    if manifest.get(SCALE_KEY) is None or context.settings.latency.rounds == 0:
        return None
    known = frozenset(manifest[SCALE_KEY])
    kind, measured = time_reference_on_cluster(context, gpus_per_trial, known, say=say, local=local)
    if measured is not None:
        manifest[SCALE_KEY][kind] = measured
        directory.write_manifest(manifest)
    return scale_line(kind, manifest[SCALE_KEY][kind], measured_now=measured is not None)


def scale_line(kind: str, entry: dict[str, Any], *, measured_now: bool) -> str:
    """The run's line about its reference time ``entry`` for ``kind``: measured now, taken
    from the machine's calm time instead, or fixed by an earlier run."""
    if not measured_now:
        how = f"fixed before ({entry['source']})"
    elif entry["source"] == START_SOURCE:
        how = "measured now"
    else:  # the time measured now was not calm: threshnet.latency_scale.study_reference
        how = f"from {entry['source']}"
    return (
        f"latency scale: the reference network (ThreshNet28) takes {entry['ms']:.3f} ms on "
        f"{kind}; every latency is its ratio to it x that time ({how})"
        + ("; the machine was oversubscribed then" if entry.get("oversubscribed") else "")
    )


class ScaleBook:
    """Puts each record's latency on the study's scale for its device kind."""

    def __init__(self, directory: StudyDirectory, manifest: dict[str, Any]):
        self._directory = directory
        self._manifest = manifest

    def settle(self, record: dict[str, Any], number: int) -> dict[str, Any]:
        """``record`` with ``latency_ms`` = ratio x the study's reference time for its
        kind; a kind first seen here keeps the time its worker measured."""
        entries = self._manifest.get(SCALE_KEY)
        kind, scale_ms = record.get("latency_kind"), record.get("latency_scale_ms")
        if entries is None or not kind or scale_ms is None or math.isnan(scale_ms):
            return record
        if kind not in entries:
            entries[kind] = {
                "ms": scale_ms,
                "source": f"the worker of trial {number} ({record.get('node')})",
            }
            self._directory.write_manifest(self._manifest)
        known = float(entries[kind]["ms"])
        if known == scale_ms:
            return record
        return {**record, "latency_ms": record["latency_ratio"] * known, "latency_scale_ms": known}
