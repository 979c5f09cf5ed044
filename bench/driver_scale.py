"""The driver at scale, with simulated trials (``search.run --simulate``; BENCHMARKS.md, "Scale").

Two ways to run many trials without a GPU:

- ``ray``: the real command as a subprocess (Ray Tune, the sampler, the journal, trials.csv,
  the progress line), trials sleeping ``--seconds`` on fractional CPUs. Reports the driver's
  throughput (ended trials per second, from the first trial's start to the last one's end),
  the busy fraction (time trials ran / (trials in flight x that span)), and the driver's
  RSS at 1,000 finished trials and at the end, and the driver process's CPU time per
  ended trial; ``--resume K`` then resumes the study for K more trials and reports the
  seconds from the command's start to its first new trial's start, and ``python -m
  studies.report`` on the study. ``--baseline-env NAME=VALUE ...`` adds a baseline run
  with those environment variables beside each run (interleaved, order alternating) and
  prints min / median / max per arm with the ratios of the medians.
- ``loop``: the driver's own loop without Ray: the searcher the tuner builds
  (search.driver.tuner.make_searcher: sampler, storage, trials.csv, progress) driven by a
  discrete-event loop on a simulated clock, the real driver time spent on each suggestion
  and record added to that clock. Hundreds to thousands in flight cost seconds of trial
  time; the wall time is the driver's own. Reports the driver's RSS at 1,000 finished
  trials and at the end; ``--resume K`` then has the real command (Ray,
  ``--resume-in-flight`` trials at once) take the study up for K more trials, as above.

    python bench/driver_scale.py ray --in-flight 16 32 64 --trials 1000 --sampler tpe
    python bench/driver_scale.py ray --in-flight 64 --trials 192 --seconds 20 --spread 0
    python bench/driver_scale.py ray --in-flight 32 --trials 300 --sampler random --repeats 3 \
        --baseline-env TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1 TUNE_GLOBAL_CHECKPOINT_S=600
    python bench/driver_scale.py loop --in-flight 256 1000 --trials 1000 10000 --sampler random
    python bench/driver_scale.py loop --in-flight 256 --trials 10000 --sampler random --resume 16
    python bench/driver_scale.py loop --in-flight 32 --trials 1000 --sampler gp-tpe --split 200
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import heapq
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import optuna
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.driver.bookkeeping import queue_presets
from search.driver.progress import Progress
from search.driver.records import TrialsTable
from search.driver.tuner import TuneRun, make_searcher, simulated_context
from search.methods.samplers import SAMPLERS
from search.methods.surrogates import Simulation
from search.setup.provenance import new_manifest
from search.setup.settings import DEFAULT_SETTINGS
from search.setup.study import StudyDirectory
from search.worker.simulated import simulate_trial
from space import param_names
from studies import schema

ROOT = Path(__file__).resolve().parents[1]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", **(extra or {})}


def _rows(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)


def _search(
    out: Path, name: str, args: argparse.Namespace, in_flight: int, trials: int
) -> list[str]:
    return [
        sys.executable, "-m", "search.run", "--out", str(out), "--name", name, "-q",
        "--simulate", "--simulate-seconds", f"{args.seconds},{args.spread}",
        "--sampler", args.sampler, "--trials", str(trials), "--num-cpus", str(args.num_cpus),
        "--cpus-per-trial", f"{args.num_cpus / (in_flight + 1):.4f}",
        "--max-concurrent", str(in_flight),
    ]  # fmt: skip


def _watch(
    command: list[str], table: Path, extra_env: dict[str, str] | None = None
) -> tuple[float, list[tuple[int, float, float]]]:
    """Run ``command``; its seconds and, every second, (table rows, driver RSS MB, driver
    CPU seconds: the command's own process, not Ray's)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=_env(extra_env), stdout=subprocess.DEVNULL)
    driver = psutil.Process(process.pid)
    samples: list[tuple[int, float, float]] = []
    while process.poll() is None:
        try:
            cpu = driver.cpu_times()
            rss = driver.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            break
        samples.append((_rows(table), rss, cpu.user + cpu.system))
        time.sleep(1)
    if process.wait() != 0:
        raise SystemExit(f"{' '.join(command)} exited with {process.returncode}")
    return time.perf_counter() - started, samples


def _span(root: Path, since: dt.datetime | None = None) -> dict[str, float]:
    """Throughput and busy fraction of the trials that started after ``since``."""
    study = optuna.load_study(study_name=root.name, storage=schema.open_storage(root, None))
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.datetime_complete is not None and (since is None or t.datetime_start >= since)
    ]
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    span = (last - first).total_seconds()
    busy = sum(schema.trial_record(t).get("trial_seconds", 0.0) for t in trials)
    return {"ended": len(trials), "span_s": span, "per_s": len(trials) / span, "busy": busy}


def _ray(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The real command; with ``--baseline-env``, also a baseline run with those variables
    beside each product run, interleaved, the pair's order alternating between repeats."""
    arms = (
        [("baseline", args.baseline_env), ("product", {})]
        if args.baseline_env
        else [("product", {})]
    )
    for repeat in range(args.repeats):
        for in_flight in args.in_flight:
            for arm, extra_env in arms if repeat % 2 == 0 else arms[::-1]:
                yield _ray_once(args, repeat, in_flight, arm, extra_env)


def _ray_once(
    args: argparse.Namespace, repeat: int, in_flight: int, arm: str, extra_env: dict[str, str]
) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="driver-scale-", dir=args.out))
    name = f"ray-{in_flight}-{repeat}"
    root = out / name
    command = _search(out, name, args, in_flight, args.trials)
    wall, samples = _watch(command, root / schema.TRIALS_FILE, extra_env)
    span = _span(root)
    at_1000 = next((rss for rows, rss, _ in samples if rows >= 1000), None)
    row = {
        "arm": "ray" if arm == "product" else f"ray, {arm}",
        "env": extra_env, "sampler": args.sampler, "in_flight": in_flight,
        "trials": args.trials, "seconds": args.seconds, "spread": args.spread,
        "wall_s": wall, "per_s": span["per_s"],
        "busy_fraction": span["busy"] / (in_flight * span["span_s"]),
        "rss_mb_at_1000": at_1000, "rss_mb_end": samples[-1][1] if samples else None,
        "driver_cpu_ms_per_trial": 1000 * samples[-1][2] / span["ended"] if samples else None,
    }  # fmt: skip
    if args.resume:
        row.update(_resume(out, name, args, in_flight, args.trials))
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


def _resume(
    out: Path, name: str, args: argparse.Namespace, in_flight: int, trials: int
) -> dict[str, Any]:
    """Seconds from a resuming command's start to its first new trial's start, its RSS at
    the end, and ``studies.report``'s seconds on the study."""
    launched = dt.datetime.now()
    command = _search(out, name, args, in_flight, trials + args.resume)
    _, samples = _watch(command, out / name / schema.TRIALS_FILE)
    study = optuna.load_study(study_name=name, storage=schema.open_storage(out / name, None))
    first_new = min(
        t.datetime_start
        for t in study.get_trials(deepcopy=False)
        if t.datetime_start is not None and t.datetime_start >= launched
    )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "studies.report", str(out / name)],
        env=_env(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return {
        "resume_to_first_trial_s": (first_new - launched).total_seconds(),
        "resume_rss_mb_end": samples[-1][1] if samples else None,
        "report_s": time.perf_counter() - started,
    }


def _loop_once(args: argparse.Namespace, in_flight: int, trials: int) -> dict[str, Any]:
    """The searcher on a simulated clock: driver time (real) plus trial time (drawn)."""
    simulation = Simulation(seconds=args.seconds, spread=args.spread)
    settings = dataclasses.replace(DEFAULT_SETTINGS, simulation=simulation, sampler=args.sampler)
    out = Path(tempfile.mkdtemp(prefix="driver-loop-", dir=args.out))
    name = f"loop-{in_flight}-{trials}"  # a study search.run --out OUT --name NAME resumes
    directory = StudyDirectory(out / name)
    directory.create()
    directory.write_manifest(new_manifest(name, settings, None))
    storage = directory.storage()
    queue_presets(directory.load_study(storage, name), settings.space)
    table = TrialsTable(directory.trials_path, tuple(param_names(settings.space)))
    run = TuneRun(name, storage, table, str(directory.root), 1, trials, 0.0, 0.0)
    context = simulated_context(settings)
    clock = 0.0  # simulated seconds
    busy = 0.0
    events: list[tuple[float, int, str, dict[str, Any]]] = []
    rss_at_1000 = None
    split_at = None  # simulated clock when the args.split-th trial ended
    started = time.perf_counter()
    with open(os.devnull, "w") as sink, redirect_stdout(sink):
        searcher = make_searcher(run, settings, Progress(target=trials, full_epochs=4))
        number = 0  # the next trial's id: each one once, as Ray Tune gives them
        while True:
            while len(events) < in_flight:
                spent = time.perf_counter()
                config = searcher.suggest(f"t{number}")
                clock += time.perf_counter() - spent
                if not isinstance(config, dict):
                    break
                trial = simulate_trial(config, context)
                busy += trial.seconds
                heapq.heappush(events, (clock + trial.seconds, number, f"t{number}", trial.record))
                number += 1
            if not events:
                break
            ends, _, trial_id, record = heapq.heappop(events)
            clock = max(clock, ends)
            spent = time.perf_counter()
            searcher.on_trial_complete(trial_id, record)
            clock += time.perf_counter() - spent
            if rss_at_1000 is None and searcher.finished >= 1000:
                rss_at_1000 = _rss_mb()
            if split_at is None and args.split and searcher.finished >= args.split:
                split_at = clock
    wall = time.perf_counter() - started
    row = {
        "arm": "loop", "sampler": args.sampler, "in_flight": in_flight, "trials": trials,
        "seconds": args.seconds, "spread": args.spread, "wall_s": wall,
        "driver_ms_per_trial": 1000 * wall / trials, "simulated_s": clock,
        "per_s": trials / clock, "busy_fraction": busy / (in_flight * clock),
        "rss_mb_at_1000": rss_at_1000, "rss_mb_end": _rss_mb(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip
    if split_at is not None:  # ended trials/s up to the split and after it
        row["per_s_before_split"] = args.split / split_at
        row["per_s_after_split"] = (trials - args.split) / (clock - split_at)
    if args.resume:  # the real command (Ray) takes the loop's study up
        row.update(_resume(out, name, args, args.resume_in_flight, trials))
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _loop(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for _ in range(args.repeats):
        for trials in args.trials_list:
            for in_flight in args.in_flight:
                yield _loop_once(args, in_flight, trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arm", choices=("ray", "loop"))
    parser.add_argument("--in-flight", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000])
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    parser.add_argument("--seconds", type=float, default=0.5, help="mean trial duration")
    parser.add_argument("--spread", type=float, default=0.25, help="uniform +- this")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--num-cpus", type=int, default=2, help="of the local Ray")
    parser.add_argument(
        "--resume", type=int, default=0, help="then K more trials by the real command (Ray)"
    )
    parser.add_argument(
        "--resume-in-flight", type=int, default=8, help="loop: trials in flight when resuming"
    )
    parser.add_argument(
        "--split",
        type=int,
        default=0,
        help="loop: also ended trials/s before and after the N-th ended trial (e.g. gp-tpe's "
        "hand-over, 200)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the study directories")
    parser.add_argument("--out", default=None, help="parent of the temporary studies")
    parser.add_argument("--json", help="also append each row to this JSON-lines file")
    parser.add_argument(
        "--baseline-env",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="ray: also a baseline run with these environment variables before each run",
    )
    args = parser.parse_args()
    args.trials_list = args.trials
    args.trials = args.trials[0]
    args.baseline_env = dict(item.split("=", 1) for item in args.baseline_env)
    print(f"# driver scale: {args.arm}, optuna {optuna.__version__}, {os.cpu_count()} CPUs")
    rows = []
    for row in (_ray if args.arm == "ray" else _loop)(args):
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
        if args.json:
            with open(args.json, "a") as handle:
                handle.write(json.dumps(row) + "\n")
    if args.baseline_env:
        _print_comparison(rows)


def _print_comparison(rows: list[dict[str, Any]]) -> None:
    """Min / median / max per arm and in-flight count, and the ratios of the medians."""
    print(
        "| in flight | arm | ended trials/s min / median / max | busy fraction (median) "
        "| driver CPU ms a trial min / median / max |"
    )
    print("|---|---|---|---|---|")
    for in_flight in sorted({row["in_flight"] for row in rows}):
        rates, cpus = {}, {}
        for arm in sorted({row["arm"] for row in rows}):
            mine = [row for row in rows if row["in_flight"] == in_flight and row["arm"] == arm]
            rate = sorted(row["per_s"] for row in mine)
            cpu = sorted(row["driver_cpu_ms_per_trial"] for row in mine)
            rates[arm], cpus[arm] = statistics.median(rate), statistics.median(cpu)
            busy = statistics.median(row["busy_fraction"] for row in mine)
            print(
                f"| {in_flight} | {arm} | {rate[0]:.2f} / {rates[arm]:.2f} / {rate[-1]:.2f} "
                f"| {busy:.3f} | {cpu[0]:.0f} / {cpus[arm]:.0f} / {cpu[-1]:.0f} |"
            )
        base = next(arm for arm in rates if arm != "ray")
        print(
            f"# {in_flight} in flight, product / baseline (medians): throughput "
            f"{rates['ray'] / rates[base]:.2f}, driver CPU a trial {cpus['ray'] / cpus[base]:.2f}"
        )


if __name__ == "__main__":
    main()
