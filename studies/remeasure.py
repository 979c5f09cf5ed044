"""``python -m studies.remeasure <study-dir>``: the final latency pass of a study.

During a search each trial's latency is timed once, while other trials may be training
and the machine's load drifts. Before a front is final, this pass re-times the front
candidates (the trials of the first ``--fronts`` non-dominated layers) and the
published presets back to back: ``--rounds`` rounds, the candidates in a new shuffled
order each round, each timing paired with the reference network (ThreshNet28) as in a
trial (threshnet.steady_latency), in the study's latency backend (eager PyTorch or ONNX
Runtime); a candidate's outlier rounds are measured again and rounds are added while its
figure's error is high (bounded), and a
trial the new figures bring onto the front is re-timed too. The
figures go to ``<study-dir>/remeasured.csv``; ``studies.load`` puts them in place of the
search's latencies, so the report's front, ``pareto.json`` and the export use them (and
say so). ``search.run`` runs this pass when a study reaches its trial count.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from studies import schema
from studies.load import Study, StudyError, eligible_trials, load_study
from studies.pareto import pareto_mask
from studies.schema import LATENCY_SCALE_KEY
from threshnet.cli import ArgumentParser, UserError, positive_int, run_cli
from threshnet.config import ThreshNetConfig
from threshnet.latency import LatencySettings, device_name
from threshnet.latency_scale import device_kind, measure_reference_time
from threshnet.machine_load import CALM_WAIT_SECONDS, LoadWindow, wait_until_calm
from threshnet.model import build_model
from threshnet.onnx_export import INSTALL_HINT, missing_packages
from threshnet.presets import PUBLISHED_PRESETS
from threshnet.steady_latency import (
    ADD_ROUND,
    STEADY_SE,
    measure_steady_latency,
    next_round,
    reference_config,
    round_statistics,
    timed_network,
)

if TYPE_CHECKING:
    from threshnet.steady_latency import Network

PROG = "studies.remeasure"
DEFAULT_ROUNDS = 5
DEFAULT_FRONTS = 2
MAX_WIDENINGS = 3  # times the re-timed set grows to cover a front that moved
MAX_ATTEMPTS = 3  # whole re-timings of a trial that stayed unsteady
# Rounds an attempt may time beyond --rounds for one trial (outliers again, or rounds
# added while its figure's error is above STEADY_SE), as a multiple of --rounds
EXTRA_ROUNDS_FACTOR = 2
# A round's figure is its fastest pass: the pass re-times only the front and the presets,
# so it affords more passes a round than a search trial (--smoke: 3), which makes that
# minimum, and the CV its rule reads, steadier (BENCHMARKS.md, "Latency stability")
MIN_REPEATS_PER_ROUND = 10


def front_candidates(study: Study, fronts: int = DEFAULT_FRONTS) -> pd.DataFrame:
    """The eligible trials of the first ``fronts`` non-dominated layers, and the
    presets, by the search's own latencies."""
    remaining = eligible_trials(study, search_latencies=True)
    layers = []
    for _ in range(fronts):
        if remaining.empty:
            break
        mask = pareto_mask(remaining)
        layers.append(remaining[mask])
        remaining = remaining[~mask]
    presets = remaining[remaining["preset"].isin(PUBLISHED_PRESETS)]
    return pd.concat([*layers, presets]).sort_values("number")


def _settings(study: Study, threads: int | None, device: torch.device) -> LatencySettings:
    """The study's protocol, with at least ``MIN_REPEATS_PER_ROUND`` passes a round."""
    protocol = study.settings["latency"]
    rounds = max(1, int(protocol.get("rounds", DEFAULT_ROUNDS)))
    return LatencySettings(
        warmup=int(protocol["warmup"]),
        repeats=max(MIN_REPEATS_PER_ROUND, -(-int(protocol["repeats"]) // rounds)),
        threads=threads if device.type == "cpu" else None,
    )


# Times one round of trial ``number``'s network: (its ms, the reference's ms)
RoundTimer = Callable[[int, "Network"], tuple[float, float]]


@dataclass(frozen=True)
class Remeasured:
    """What a pass re-timed, and the reference time it measured for a device kind the
    study had none for (to keep in the manifest; None when it had one)."""

    table: pd.DataFrame  # REMEASURED_FIELDS, one row per trial
    kind: str
    new_reference: dict[str, Any] | None


def remeasure(
    study: Study,
    *,
    device: torch.device,
    threads: int | None,
    rounds: int = DEFAULT_ROUNDS,
    fronts: int = DEFAULT_FRONTS,
    seed: int = 0,
    attempts: int = MAX_ATTEMPTS,
    calm_seconds: float = CALM_WAIT_SECONDS,
    time_round: RoundTimer | None = None,
) -> Remeasured:
    """Re-time the front candidates and presets; one row per trial (see module doc).

    Each trial gets ``rounds`` rounds, then (up to ``EXTRA_ROUNDS_FACTOR`` x ``rounds``
    more) its outlier rounds again and new rounds while its median ratio's relative
    standard error is above ``STEADY_SE``. A trial's new figure replaces the search's only
    when steady (that error at most ``STEADY_SE``); the unsteady are timed again after
    waiting (at most
    ``calm_seconds``) for the machine to be calm, up to ``attempts`` times in all, and
    then keep the search's figure, flagged. ``time_round`` times one round of a trial's
    network (default: paired with the reference, threshnet.steady_latency).

    When the figures put a trial on the front that was not re-timed, it is re-timed too,
    until the front is made of re-timed trials only (at most ``MAX_WIDENINGS`` times).
    """
    eligible = eligible_trials(study, search_latencies=True).set_index("number")
    settings = _settings(study, threads, device)
    input_size = int(
        study.settings["latency"].get("input_size") or study.settings["train"]["input_size"]
    )
    backend = study_backend(study)
    clock = str(study.settings["latency"].get("clock", "wall"))

    def timed(model: torch.nn.Module) -> Network:
        return timed_network(
            model, backend, input_size=input_size, device=device, threads=settings.threads
        )

    reference = timed(build_model(reference_config()))
    kind = device_kind(backend, device, device_name(device), settings.threads)
    scale = study.manifest.get(LATENCY_SCALE_KEY)
    new_reference = None
    if scale is not None and kind not in scale:  # the device is idle: time it now
        new_reference = measure_reference_time(
            reference,
            input_size=input_size,
            device=device,
            settings=settings,
            rounds=rounds,
            source="the final latency pass (the study had no time for this device kind)",
            clock=clock,
        ).to_dict()
    entry = new_reference or (scale or {}).get(kind)
    scale_ms = None if entry is None else float(entry["ms"])
    shuffle = random.Random(seed)
    outcomes: dict[int, dict[str, Any]] = {}

    def time_once(number: int, model: Network) -> tuple[float, float]:
        if time_round is not None:
            return time_round(number, model)
        steady = measure_steady_latency(
            model,
            reference,
            input_size=input_size,
            device=device,
            settings=settings,
            rounds=1,
            max_extra_rounds=0,
            clock=clock,
        )
        return steady.latency_ms, steady.reference_ms

    def time_rounds(
        numbers: list[int], models: dict[int, Network]
    ) -> tuple[dict[int, list[tuple[float, float]]], str]:
        """Rounds of every trial in ``numbers``, each round in a new order, then their
        outlier rounds again and more rounds while their error is high (``next_round``);
        and the machine's load meanwhile."""
        measured: dict[int, list[tuple[float, float]]] = {number: [] for number in numbers}
        window = LoadWindow()
        for _ in range(rounds):
            shuffle.shuffle(numbers)
            for number in numbers:
                measured[number].append(time_once(number, models[number]))
        extra = dict.fromkeys(numbers, 0)
        while True:  # outlier rounds again, then rounds added while the error is high
            open_ = [number for number in numbers if extra[number] < rounds * EXTRA_ROUNDS_FACTOR]
            actions = {
                number: next_round([ms / ref for ms, ref in measured[number]]) for number in open_
            }
            todo = [number for number in open_ if actions[number] is not None]
            if not todo:
                break
            shuffle.shuffle(todo)
            for number in todo:
                figure = time_once(number, models[number])
                if actions[number] == ADD_ROUND:
                    measured[number].append(figure)
                else:
                    measured[number][actions[number]] = figure
                extra[number] += 1
        load = window.reading()
        oversubscribed = " (oversubscribed)" if load.oversubscribed else ""
        return measured, load.describe() + oversubscribed

    def measure(numbers: list[int]) -> None:
        todo = list(numbers)
        models = {  # built (and exported, for ONNX Runtime) once for every attempt
            number: timed(
                build_model(ThreshNetConfig.from_json(eligible.loc[number, "config_json"]))
            )
            for number in numbers
        }
        for attempt in range(1, attempts + 1):
            measured, load = time_rounds(todo, models)
            for number, values in measured.items():
                combined = round_statistics(values)
                steady = combined.ratio_se <= STEADY_SE
                search_ms = float(eligible.loc[number, "latency_ms"])
                figure = combined.latency_ms if scale_ms is None else combined.ratio * scale_ms
                outcomes[number] = {
                    "number": number,
                    "latency_ms": figure if steady else search_ms,
                    "latency_ref_ms": combined.reference_ms,
                    "latency_ratio": combined.ratio,
                    "latency_cv": combined.ratio_cv,
                    "rounds": len(values),
                    "source": "re-measured" if steady else "search",
                    "flagged": int(not steady),
                    "attempts": attempt,
                    "latency_raw_ms": combined.latency_ms,
                    "latency_scale_ms": scale_ms or 0.0,
                    "load": load,
                }
            todo = [number for number in todo if outcomes[number]["flagged"]]
            if not todo:
                break
            wait_until_calm(calm_seconds)

    measure([int(number) for number in front_candidates(study, fronts)["number"]])
    for _ in range(MAX_WIDENINGS):
        latencies = eligible["latency_ms"].copy()
        for number, outcome in outcomes.items():
            latencies[number] = outcome["latency_ms"]
        front = pareto_mask(eligible.assign(latency_ms=latencies).reset_index())
        missing = [int(n) for n in eligible.index[front] if int(n) not in outcomes]
        if not missing:
            break
        measure(missing)
    stamp = dt.datetime.now(dt.UTC).isoformat()
    rows = [
        {
            **outcomes[number],
            "device": str(device),
            "device_name": device_name(device),
            "threads": settings.threads if settings.threads is not None else 0,
            "measured_at": stamp,
        }
        for number in sorted(outcomes)
    ]
    table = pd.DataFrame(rows, columns=list(schema.REMEASURED_FIELDS))
    return Remeasured(table=table, kind=kind, new_reference=new_reference)


def study_backend(study: Study) -> str:
    """The latency backend the study's trials were timed with (eager before there was a
    choice)."""
    return str(study.settings["latency"].get("backend", "eager"))


def default_device(study: Study) -> torch.device:
    """Where the study timed its latencies (its trials' most common latency device)."""
    devices = study.trials.get("latency_device")
    recorded = devices.dropna() if devices is not None else pd.Series([], dtype=str)
    kind = recorded.mode().iloc[0].split(":")[0] if len(recorded) else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "the study timed its latencies on a GPU and this machine has none; run this "
            "where the study ran, or pass --device cpu to re-time on this CPU"
        )
    return torch.device(kind)


def remeasure_study(
    study_dir: str | Path,
    *,
    device: str | None = None,
    threads: int | None = None,
    rounds: int = DEFAULT_ROUNDS,
    fronts: int = DEFAULT_FRONTS,
) -> tuple[Path, pd.DataFrame]:
    """Re-time and write ``remeasured.csv``; (its path, its table)."""
    try:
        study = load_study(study_dir)
    except StudyError as error:
        raise UserError(str(error)) from None
    missing = missing_packages() if study_backend(study) == "onnxruntime" else []
    if missing:
        raise UserError(
            f"the study times latency in ONNX Runtime, which needs {', '.join(missing)}: "
            f"{INSTALL_HINT}"
        )
    target = torch.device(device) if device else default_device(study)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but this machine has no GPU")
    if threads is None and target.type == "cpu":
        recorded = study.trials.get("latency_threads")
        known = recorded.dropna() if recorded is not None else pd.Series([], dtype=float)
        threads = int(known.median()) if len(known) else 1
    if threads is not None:
        threads = min(threads, os.cpu_count() or 1)
    result = remeasure(study, device=target, threads=threads, rounds=rounds, fronts=fronts)
    try:
        path = write_remeasured(Path(study_dir), result)
    except OSError as error:
        raise UserError(f"cannot write into {study_dir}: {error.strerror}") from None
    return path, result.table


def write_remeasured(root: Path, result: Remeasured) -> Path:
    """Write the pass's table, and keep a reference time it measured in the manifest."""
    if result.new_reference is not None:
        manifest = schema.read_manifest(root)
        if manifest is not None:
            manifest.setdefault(LATENCY_SCALE_KEY, {}).setdefault(result.kind, result.new_reference)
            schema.write_manifest(root, manifest)
    return schema.write_remeasured(root, result.table)


def describe(table: pd.DataFrame) -> str:
    """E.g. "12 trials re-timed: 11 replaced, 1 unsteady (the search's figure kept)"."""
    kept = int(table["flagged"].sum()) if len(table) else 0
    return f"{len(table)} trials re-timed: {len(table) - kept} replaced" + (
        f", {kept} unsteady (the search's figure kept, flagged)" if kept else ""
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", help="a directory written by search.run")
    parser.add_argument(
        "--rounds", type=positive_int, default=DEFAULT_ROUNDS, help="shuffled rounds of timing"
    )
    parser.add_argument(
        "--fronts", type=positive_int, default=DEFAULT_FRONTS, help="non-dominated layers"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), help="(default: where the study timed)"
    )
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: the study's)")
    args: Any = parser.parse_args(argv)
    path, table = remeasure_study(
        args.study_dir,
        device=args.device,
        threads=args.threads,
        rounds=args.rounds,
        fronts=args.fronts,
    )
    print(f"{describe(table)} ({args.rounds} rounds, shuffled): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
