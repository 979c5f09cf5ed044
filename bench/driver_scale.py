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
  trials and at the end, the study's noise-free hypervolume (the surrogate's values, as
  bench/sampler_efficiency.py) at the end, after ``--at-trials`` ended trials and by the
  simulated times ``--at-seconds``, and the trials each sampler of gp-tpe suggested and
  how many its GP modelled (``--gp-share``: its pacing, 1 for none);
  ``--resume K`` then has the real command (Ray, ``--resume-in-flight`` trials at once)
  take the study up for K more trials, as above.

    python bench/driver_scale.py ray --in-flight 16 32 64 --trials 1000 --sampler tpe
    python bench/driver_scale.py ray --in-flight 64 --trials 192 --seconds 20 --spread 0
    python bench/driver_scale.py ray --in-flight 32 --trials 300 --sampler random --repeats 3 \
        --baseline-env TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1 TUNE_GLOBAL_CHECKPOINT_S=600
    python bench/driver_scale.py loop --in-flight 256 1000 --trials 1000 10000 --sampler random
    python bench/driver_scale.py loop --in-flight 256 --trials 10000 --sampler random --resume 16
    python bench/driver_scale.py loop --in-flight 32 --trials 1000 --sampler gp-tpe --split 200
    python bench/driver_scale.py loop --in-flight 32 --trials 1000 --sampler gp-tpe --split 200 \
        --seconds 5 --spread 1 --gp-share 1
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
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import psutil
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.driver.bookkeeping import QUEUED_PRESET_ATTR, queue_presets
from search.driver.progress import Progress
from search.driver.records import TrialsTable
from search.driver.tuner import TuneRun, make_searcher, simulated_context
from search.methods.handover import SAMPLER_ATTR
from search.methods.samplers import GP_SHARE, SAMPLERS, STARTUP_TRIALS
from search.methods.surrogates import SURROGATES, Simulation, features
from search.setup.provenance import new_manifest
from search.setup.settings import DEFAULT_SETTINGS, StudySettings
from search.setup.study import StudyDirectory
from search.worker.simulated import simulate_trial
from space import param_names, params_to_config
from studies import schema
from studies.pareto import default_reference, hypervolume

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


class SimulatedClock:
    """The loop's simulated seconds: the driver's real time plus the waits for trials to
    end, which the simulation skips (so a sampler timing itself by it sees trials last)."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.perf_counter() + self.skipped

    def wait_until(self, moment: float) -> None:
        self.skipped += max(0.0, moment - self())


def _loop_once(args: argparse.Namespace, in_flight: int, trials: int) -> dict[str, Any]:
    """The searcher on a simulated clock: driver time (real) plus trial time (drawn)."""
    simulation = Simulation(seconds=args.seconds, spread=args.spread)
    settings = dataclasses.replace(
        DEFAULT_SETTINGS, simulation=simulation, sampler=args.sampler, seed=args.seed
    )
    out = Path(tempfile.mkdtemp(prefix="driver-loop-", dir=args.out))
    name = f"loop-{in_flight}-{trials}"  # a study search.run --out OUT --name NAME resumes
    directory = StudyDirectory(out / name)
    directory.create()
    directory.write_manifest(new_manifest(name, settings, None))
    storage = directory.storage()
    presets = queue_presets(directory.load_study(storage, name), settings.space)  # trials 0..
    table = TrialsTable(directory.trials_path, tuple(param_names(settings.space)))
    run = TuneRun(name, storage, table, str(directory.root), 1, trials, 0.0, 0.0)
    context = simulated_context(settings)
    clock = SimulatedClock()
    busy = 0.0
    events: list[tuple[float, int, str, dict[str, Any]]] = []
    truths: dict[int, tuple[float, float]] = {}  # by the loop's trial number
    ended: list[dict[str, Any]] = []  # ok trials as they end: truth, preset, simulated time
    rss_at_1000 = None
    split_at = None  # simulated clock when the args.split-th trial ended
    started = time.perf_counter()
    began = clock()
    with open(os.devnull, "w") as sink, redirect_stdout(sink):
        progress = Progress(target=trials, full_epochs=4)
        searcher = make_searcher(run, settings, progress, clock=clock, gp_share=args.gp_share)
        number = 0  # the next trial's id: each one once, as Ray Tune gives them
        while True:
            while len(events) < in_flight:
                config = searcher.suggest(f"t{number}")
                if not isinstance(config, dict):
                    break
                trial = simulate_trial(config, context)
                truths[number] = _truth(config, settings)
                busy += trial.seconds
                heapq.heappush(
                    events, (clock() + trial.seconds, number, f"t{number}", trial.record)
                )
                number += 1
            if not events:
                break
            ends, done, trial_id, record = heapq.heappop(events)
            clock.wait_until(ends)
            searcher.on_trial_complete(trial_id, record)
            if record["status"] == "ok":
                accuracy, latency = truths.pop(done)
                preset = presets[record["number"]] if record["number"] < len(presets) else ""
                ended.append(
                    {"number": len(ended), "val_acc": accuracy, "latency_ms": latency,
                     "preset": preset, "ended_s": clock() - began}
                )  # fmt: skip
            if rss_at_1000 is None and searcher.finished >= 1000:
                rss_at_1000 = _rss_mb()
            if split_at is None and args.split and searcher.finished >= args.split:
                split_at = clock() - began
    wall = time.perf_counter() - started
    simulated = clock() - began
    row = {
        "arm": "loop", "sampler": args.sampler, "gp_share": args.gp_share, "seed": args.seed,
        "in_flight": in_flight, "trials": trials,
        "seconds": args.seconds, "spread": args.spread, "wall_s": wall,
        "driver_ms_per_trial": 1000 * wall / trials, "simulated_s": simulated,
        "per_s": trials / simulated, "busy_fraction": busy / (in_flight * simulated),
        "rss_mb_at_1000": rss_at_1000, "rss_mb_end": _rss_mb(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip
    if split_at is not None:  # ended trials/s up to the split and after it
        row["per_s_before_split"] = args.split / split_at
        row["per_s_after_split"] = (trials - args.split) / (simulated - split_at)
    study = directory.load_study(storage, name)
    row.update(_quality(ended, study, args.at_trials, args.at_seconds))
    if args.resume:  # the real command (Ray) takes the loop's study up
        row.update(_resume(out, name, args, args.resume_in_flight, trials))
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


def _truth(config: dict[str, Any], settings: StudySettings) -> tuple[float, float]:
    """The surrogate's noise-free (accuracy, latency) of a suggested config."""
    assert settings.simulation is not None
    model = SURROGATES[settings.simulation.surrogate]
    return model(features(params_to_config(config, settings.space), settings.train.input_size))


def _quality(
    ended: list[dict[str, Any]],
    study: optuna.Study,
    at_trials: list[int],
    at_seconds: list[float],
) -> dict[str, Any]:
    """The noise-free hypervolume (the presets' nadir as reference, as
    bench/sampler_efficiency.py) of the trials ended, in the order they ended: at the end,
    after each count in ``at_trials`` of them and by each simulated time in
    ``at_seconds``; and how many trials each sampler of a routed design suggested."""
    frame = pd.DataFrame(ended)
    reference = default_reference(frame)
    trials = study.get_trials(deepcopy=False)
    samplers = Counter(trial.system_attrs.get(SAMPLER_ATTR, "-") for trial in trials)
    return {
        "hv_end": hypervolume(frame, reference),
        "hv_at_trials": {str(n): hypervolume(frame.iloc[:n], reference) for n in at_trials},
        "hv_at_seconds": {
            str(moment): hypervolume(frame[frame["ended_s"] <= moment], reference)
            for moment in at_seconds
        },
        "trials_by_sampler": dict(samplers),
        "gp_modelled": _gp_modelled(trials),
    }


def _gp_modelled(trials: list[optuna.trial.FrozenTrial]) -> int:
    """gp-tpe's trials that its GP modelled: GP's, started once its random start-up was
    over (STARTUP_TRIALS COMPLETE trials; fifo), the published presets' left out."""
    completed = sorted(t.datetime_complete for t in trials if t.state == TrialState.COMPLETE)
    if len(completed) < STARTUP_TRIALS:
        return 0
    modelled_from = completed[STARTUP_TRIALS - 1]
    return sum(
        trial.system_attrs.get(SAMPLER_ATTR) == "gp"
        and trial.datetime_start > modelled_from
        and QUEUED_PRESET_ATTR not in trial.user_attrs
        for trial in trials
    )


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
    parser.add_argument(
        "--gp-share",
        type=float,
        default=GP_SHARE,
        help="loop: gp-tpe's pacing, the most of the (simulated) time GP may take (1: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="loop: the study's --seed")
    parser.add_argument(
        "--at-trials",
        type=int,
        nargs="*",
        default=[],
        help="loop: also the hypervolume of the first N ok trials to end",
    )
    parser.add_argument(
        "--at-seconds",
        type=float,
        nargs="*",
        default=[],
        help="loop: also the hypervolume of the trials ended by these simulated times",
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
