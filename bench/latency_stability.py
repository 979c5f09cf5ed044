"""The presets' latency under a controlled background load, by wall time and by CPU time.

For each arm (``--busy``: 0, 1, 2, 4 and 8 busy processes, each a Python spin loop like a
neighbour's job), each preset's batch-1 latency at 32x32 is measured ``--measurements``
times as a search trial measures it (threshnet.steady_latency: 5 rounds paired with the
reference network ThreshNet28, 10 repeats a round, outlier rounds again and rounds added
while the median's error is high, judged by the CPU clock as studies do; one CPU thread),
the presets' order rotated. Both clocks come from the same passes: wall time and the
thread's CPU time (threshnet.latency.cpu_clock). A figure on the study's scale is the
ratio to the reference times the reference's time on the idle machine (the median of the
idle arm's reference figures, per clock), as a study fixes it (threshnet.latency_scale).

Prints, per arm, clock and preset: the scaled figure's median, CV over the measurements and
error against the idle arm; how often the ranking 28 < 79 < 95 held; the measurements'
median rounds and how many were flagged unsteady; how many measurements
threshnet.machine_load called oversubscribed. Then one JSON line (the summary, and every
measurement with its rounds' ratios).

``--study-arm N [N ...]`` also runs the same small study (``search.run --smoke`` on
generated images, so training is seconds and latency is what is compared) on the idle
machine, then with each N busy processes, and compares each loaded study's final figures
(after the final latency pass) with the idle study's, for the front candidates and
presets they share.

    python bench/latency_stability.py --measurements 10 --busy 0 1 2 4 8
    python bench/latency_stability.py --measurements 0 --study-arm 1 2 4 8
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch

from studies.load import eligible_trials, load_study
from threshnet.latency import LatencySettings, device_name
from threshnet.machine_load import LoadWindow
from threshnet.model import build_model
from threshnet.presets import PUBLISHED_PRESETS, get_preset
from threshnet.steady_latency import measure_steady_latency, reference_config

SPIN = "while True: pass"
CLOCKS = ("wall", "cpu")
ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def busy(processes: int) -> Iterator[None]:
    """``processes`` spin loops running meanwhile."""
    load = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(processes)]
    try:
        time.sleep(2.0 if processes else 0.0)  # let the scheduler settle
        yield
    finally:
        for process in load:
            process.kill()
            process.wait()


def measure_arm(processes: int, measurements: int) -> dict[str, object]:
    """Every preset ``measurements`` times with ``processes`` busy processes."""
    names = list(PUBLISHED_PRESETS)
    models = {name: build_model(get_preset(name)) for name in names}
    reference = build_model(reference_config())
    settings = LatencySettings(repeats=10, threads=1)
    rows = []
    with busy(processes):
        for index in range(measurements):
            for name in names[index % len(names) :] + names[: index % len(names)]:
                window = LoadWindow()
                steady = measure_steady_latency(
                    models[name], reference, input_size=32, settings=settings, clock="cpu"
                )
                load = window.reading()
                assert steady.cpu is not None and steady.wall is not None
                rows.append(
                    {
                        "measurement": index,
                        "preset": name,
                        "wall_ratio": steady.wall.ratio,
                        "wall_reference_ms": steady.wall.reference_ms,
                        "wall_cv": steady.wall.ratio_cv,
                        "cpu_ratio": steady.cpu.ratio,
                        "cpu_reference_ms": steady.cpu.reference_ms,
                        "cpu_cv": steady.cpu.ratio_cv,
                        "cpu_se": steady.cpu.ratio_se,
                        "rounds": steady.rounds,
                        "unsteady": steady.unsteady,
                        "round_ratios": steady.round_ratios,  # by the CPU clock
                        "oversubscribed": load.oversubscribed,
                        "pressure": load.pressure,
                        "load": load.load_average,
                    }
                )
            print(f"busy {processes}: measurement {index + 1} of {measurements}", flush=True)
    return {"busy": processes, "rows": rows}


def summarise(arms: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per arm, clock and preset: the scaled figure's median, CV and error vs idle."""
    frames = {arm["busy"]: pd.DataFrame(arm["rows"]) for arm in arms}
    idle = frames.get(0)
    if idle is None:
        raise SystemExit("the idle arm (--busy 0) is needed: it fixes the scale")
    ordered = sorted(PUBLISHED_PRESETS, key=lambda name: get_preset(name).depth)
    out = []
    for processes, frame in frames.items():
        for clock in CLOCKS:
            scale = float(idle[f"{clock}_reference_ms"].median())
            frame[f"{clock}_ms"] = frame[f"{clock}_ratio"] * scale
            idle_ms = idle[f"{clock}_ratio"].groupby(idle["preset"]).median() * scale
            wide = frame.pivot(index="measurement", columns="preset", values=f"{clock}_ms")
            held = int(
                sum(
                    all(row[a] < row[b] for a, b in itertools.pairwise(ordered))
                    for _, row in wide.iterrows()
                )
            )
            for name in ordered:
                values = wide[name]
                own = frame[frame["preset"] == name]
                out.append(
                    {
                        "busy": processes,
                        "clock": clock,
                        "preset": name,
                        "median_ms": float(values.median()),
                        "cv": float(values.std() / values.mean()),
                        "error_vs_idle": float(values.median() / idle_ms[name] - 1),
                        "ranking_held": held,
                        "measurements": len(values),
                        "median_rounds": float(own["rounds"].median()),
                        "flagged": int(own["unsteady"].sum()),
                        "oversubscribed": int(frame["oversubscribed"].sum()),
                        "median_pressure": float(frame["pressure"].median()),
                    }
                )
    return out


def run_study(out: Path, data: Path, processes: int) -> pd.DataFrame:
    """A small smoke study (generated images) with ``processes`` busy; its eligible trials
    as the report reads them (after the final latency pass)."""
    name = f"busy{processes}"
    command = [
        sys.executable, "-m", "search.run", "--smoke", "--trials", "6", "--data-dir", str(data),
        "--out", str(out), "--name", name, "--num-cpus", "2", "--seed", "0",
    ]  # fmt: skip
    with busy(processes):
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return eligible_trials(load_study(out / name))


def study_arms(loads: list[int]) -> list[dict[str, object]]:
    """The same small study idle and with each of ``loads`` busy processes: every loaded
    study's final figures compared with the idle one's (run once, first)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_image_folder  # the tests' generated ImageFolder

    arms = []
    with tempfile.TemporaryDirectory() as scratch:
        data = write_image_folder(Path(scratch) / "data", per_class=34, splits=("train",))
        idle = run_study(Path(scratch) / "runs", data, 0).set_index("config_json")
        for processes in loads:
            loaded = run_study(Path(scratch) / "runs", data, processes).set_index("config_json")
            arms.append(compare_studies(idle, loaded, processes))
    return arms


def compare_studies(idle: pd.DataFrame, loaded: pd.DataFrame, processes: int) -> dict[str, object]:
    """Per config both studies share: the loaded study's figure against the idle one's."""
    shared = idle.index.intersection(loaded.index)
    rows = [
        {
            "preset": idle.loc[key, "preset"] or f"trial {idle.loc[key, 'number']}",
            "idle_ms": float(idle.loc[key, "latency_ms"]),
            "idle_source": idle.loc[key, "latency_source"],
            "idle_flagged": bool(idle.loc[key, "latency_flagged"]),
            "loaded_ms": float(loaded.loc[key, "latency_ms"]),
            "error": float(loaded.loc[key, "latency_ms"] / idle.loc[key, "latency_ms"] - 1),
            "loaded_source": loaded.loc[key, "latency_source"],
            "loaded_flagged": bool(loaded.loc[key, "latency_flagged"]),
        }
        for key in shared
    ]
    for row in rows:
        print(
            f"study arm, busy {processes}: {row['preset']}: idle {row['idle_ms']:.3f} ms "
            f"({row['idle_source']}" + (", flagged" if row["idle_flagged"] else "") + "), "
            f"loaded {row['loaded_ms']:.3f} ms ({row['error']:+.1%}, {row['loaded_source']}"
            + (", flagged" if row["loaded_flagged"] else "")
            + ")",
            flush=True,
        )
    return {"busy": processes, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measurements", type=int, default=10, help="0 skips the arms")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument(
        "--study-arm", type=int, nargs="+", metavar="N", help="busy processes, one arm each"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    result: dict[str, object] = {
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {device_name(torch.device('cpu'))}",
        "torch": torch.__version__,
    }
    if args.measurements:
        if args.measurements < 2:
            parser.error("--measurements must be 0 or at least 2 (a CV needs two)")
        arms = [measure_arm(processes, args.measurements) for processes in args.busy]
        table = summarise(arms)
        for row in table:
            print(
                f"busy {row['busy']} {row['clock']:4s} {row['preset']}: median "
                f"{row['median_ms']:.3f} ms, CV {row['cv']:.1%}, vs idle "
                f"{row['error_vs_idle']:+.1%}, ranking held {row['ranking_held']} of "
                f"{row['measurements']}, rounds {row['median_rounds']:g}, flagged "
                f"{row['flagged']}, oversubscribed {row['oversubscribed']}, pressure "
                f"{row['median_pressure']:.0%}"
            )
        result["arms"] = table
        # every measurement (its rounds' ratios among them), to judge a rule on them again
        result["measurements"] = [
            {"busy": arm["busy"], **row} for arm in arms for row in arm["rows"]
        ]
    if args.study_arm:
        result["study_arms"] = study_arms(args.study_arm)
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))


if __name__ == "__main__":
    main()
