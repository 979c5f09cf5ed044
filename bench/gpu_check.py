"""The GPU check: the whole product on one GPU, in one run, with one summary file.

1. Search: the real ``python -m search.run`` on CIFAR-10 with 1, 2 and 4 trials per GPU
   (``--gpus-per-trial 1, 0.5, 0.25``), each stopped after ``--search-seconds`` the way a
   user's ``timeout`` stops it (SIGTERM). Reported: trials per hour (finished trials over
   the time from the first trial's start to the stop), the share of that time the GPU
   was busy (``nvidia-smi`` sampled twice a second), each trial's fixed overhead in its
   worker (trial time minus training, validation and latency timing) and, with one trial
   at a time, the whole fixed overhead (the gap between two completions minus the later
   trial's training, validation and latency timing), and the projected time of a
   200-trial study.
2. Proxy throughput against the authors' training loop (bench/proxy_throughput.py).
3. Latency stability: the presets' batch-1 latency, measured as a trial measures it
   (warm-up until the passes hold still, rounds against the reference network), 5 times
   (order rotated), alone on the GPU and with a busy neighbour (another process running
   matrix products on the same GPU): CV of the ms and of the ratio, ranking, warm-up
   passes, and the GPU's SM clock and temperature around each measurement (NVML).

``--dry-run`` runs the same steps on the CPU with tiny settings (a test does).
Usually started by ``bench/gpu_check.sh``, which installs optuna and Ray first.

    python bench/gpu_check.py --data ../shared/data/cifar10-jpeg.tar.xz --out /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from search.setup.settings import DEFAULT_SETTINGS
from threshnet.gpu_state import gpu_state
from threshnet.latency import LatencySettings, device_name
from threshnet.model import build_model
from threshnet.presets import PUBLISHED_PRESETS, get_preset
from threshnet.steady_latency import measure_steady_latency, reference_config
from threshnet.training.data import load_split

REPO = Path(__file__).resolve().parent.parent
STUDY_TRIALS = 200  # the study size the projection is for
STOP_GRACE_SECONDS = 90  # after SIGTERM, before SIGKILL


class GpuSampler:
    """``nvidia-smi`` utilisation samples (time, percent) while it runs; none without it."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        try:
            self._process: subprocess.Popen[str] | None = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "500",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            self._process = None
            return
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            value = line.strip().split(",")[0]
            if value.isdigit():
                self.samples.append((time.time(), float(value)))

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()

    def busy_share(self, start: float, end: float) -> float | None:
        """Mean utilisation between ``start`` and ``end`` (epoch seconds), as a fraction."""
        window = [value for stamp, value in self.samples if start <= stamp <= end]
        return statistics.fmean(window) / 100 if window else None


@dataclass
class SearchResult:
    per_gpu: int
    finished: int = 0
    failed: int = 0
    window_s: float = 0.0
    trials_per_hour: float = 0.0
    projected_minutes: float | None = None
    gpu_busy: float | None = None
    worker_overhead_s: float | None = None  # median, in the worker
    worker_overhead_share: float | None = None  # median, of the trial's time
    cold_setup_s: float | None = None  # median setup of a worker's first trial
    warm_setup_s: float | None = None  # median setup of its later trials
    gap_overhead_s: float | None = None  # median, one trial at a time only
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)


def _median(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.median()) if len(values) else None


def search_command(args: argparse.Namespace, per_gpu: int, name: str) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "search.run",
        "--trials",
        "100000",
        "--data-dir",
        args.data,
        "--cache-dir",
        args.cache_dir,
        "--out",
        str(Path(args.out) / "runs"),
        "--name",
        name,
        "--seed",
        "0",
    ]
    if args.dry_run:  # CPU: one CPU per trial stands in for a share of the GPU
        return [
            *command,
            "--smoke",
            "--gpus-per-trial",
            "0",
            "--num-cpus",
            str(per_gpu),
            "--max-concurrent",
            str(per_gpu),
        ]
    return [*command, "--gpus-per-trial", f"{1 / per_gpu:g}"]


def run_search(args: argparse.Namespace, per_gpu: int) -> SearchResult:
    """One time-boxed study with ``per_gpu`` trials sharing the GPU."""
    name = f"per-gpu-{per_gpu}"
    log = Path(args.out) / f"search-{per_gpu}.log"
    sampler = GpuSampler()
    with log.open("w") as output:
        process = subprocess.Popen(
            search_command(args, per_gpu, name),
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            process.wait(timeout=args.search_seconds)
        except subprocess.TimeoutExpired:
            stopped = time.time()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        else:
            stopped = time.time()
    sampler.stop()
    result = SearchResult(per_gpu=per_gpu, exit_code=process.returncode)
    table = Path(args.out) / "runs" / name / "trials.csv"
    if not table.exists():
        result.notes.append(f"no trials table; see {log.name}")
        return result
    trials = pd.read_csv(table)
    for column in ("datetime_start", "datetime_complete"):
        trials[column] = pd.to_datetime(trials[column], format="ISO8601", utc=True)
    ended = trials[trials["status"].isin(["ok", "failed"])]
    ok = trials[trials["status"] == "ok"]
    result.finished, result.failed = len(ended), int((ended["status"] == "failed").sum())
    if trials["datetime_start"].notna().any():
        first = trials["datetime_start"].min().timestamp()
        result.window_s = stopped - first
        result.trials_per_hour = result.finished / result.window_s * 3600
        if result.trials_per_hour:
            result.projected_minutes = STUDY_TRIALS / result.trials_per_hour * 60
        result.gpu_busy = sampler.busy_share(first, stopped)
    work = ok["train_seconds"] + ok["eval_seconds"] + ok["latency_seconds"]
    overhead = ok["trial_seconds"] - work
    result.worker_overhead_s = _median(overhead)
    result.worker_overhead_share = _median(overhead / ok["trial_seconds"])
    result.cold_setup_s = _median(ok.loc[ok["worker_trial"] == 1, "setup_seconds"])
    result.warm_setup_s = _median(ok.loc[ok["worker_trial"] > 1, "setup_seconds"])
    if per_gpu == 1 and len(ok) > 2:
        ordered = ok.sort_values("datetime_complete")
        gaps = ordered["datetime_complete"].diff().dt.total_seconds()
        work = ordered["train_seconds"] + ordered["eval_seconds"] + ordered["latency_seconds"]
        whole = gaps - work
        result.gap_overhead_s = _median(whole.iloc[1:])
    return result


def run_throughput(args: argparse.Namespace) -> dict[str, Any] | None:
    """bench/proxy_throughput.py's JSON line, or None (its log says why)."""
    command = [
        sys.executable,
        "bench/proxy_throughput.py",
        "--data-dir",
        args.data,
        "--cache-dir",
        args.cache_dir,
    ]
    if args.dry_run:
        command += ["--images", "48", "--batch-size", "16", "--warmup-steps", "1", "--rounds", "1"]
    else:
        command += ["--images", "20000", "--rounds", "3"]
    log = Path(args.out) / "throughput.log"
    with log.open("w") as output:
        finished = subprocess.run(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=output, text=True, check=False
        )
        output.write(finished.stdout)
    for line in reversed(finished.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


# A neighbour's work on the same device: matrix products on the GPU, a spin loop on a CPU
NEIGHBOUR = {
    "cuda": "import torch\na = torch.randn(4096, 4096, device='cuda')\nwhile True: a @ a",
    "cpu": "while True: pass",
}


def run_latency_arms(args: argparse.Namespace) -> dict[str, Any]:
    """The latency rounds alone on the device, then with a busy neighbour on it."""
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    alone = run_latency_rounds(args, device)
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR[device.type]])
    try:
        time.sleep(5.0 if device.type == "cuda" else 0.5)  # its CUDA context up and busy
        busy = run_latency_rounds(args, device)
    finally:
        neighbour.kill()
        neighbour.wait()
    return {**alone, "with_neighbour": busy}


def run_latency_rounds(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Batch-1 latency of each preset, ``--latency-rounds`` times, order rotated."""
    protocol = DEFAULT_SETTINGS.latency
    settings = LatencySettings(
        warmup=2 if args.dry_run else protocol.warmup,
        repeats=3 if args.dry_run else protocol.repeats_per_round,
        threads=1 if device.type == "cpu" else None,  # as a 1-CPU trial measures
    )
    models = {name: build_model(get_preset(name)) for name in PUBLISHED_PRESETS}
    reference = build_model(reference_config())
    medians: dict[str, list[float]] = {name: [] for name in models}
    ratios: dict[str, list[float]] = {name: [] for name in models}
    rankings = []
    warmups: list[int] = []
    states: list[dict[str, float]] = []
    names = list(models)
    for round_index in range(args.latency_rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:  # as a trial measures it: rounds against the reference
            before = gpu_state(device, "before")
            result = measure_steady_latency(
                models[name], reference, input_size=32, device=device, settings=settings
            )
            states.append({**before, **gpu_state(device, "after")})
            warmups.append(result.warmup_passes)
            medians[name].append(result.latency_ms)
            ratios[name].append(result.ratio)
        rankings.append(sorted(names, key=lambda name: medians[name][-1]))

    def cv(values: list[float]) -> float:
        return statistics.stdev(values) / statistics.fmean(values)

    return {
        "device": device_name(device),
        "settings": asdict(settings),
        "median_ms": {name: statistics.median(values) for name, values in medians.items()},
        "cv": {name: cv(values) for name, values in medians.items()},
        "ratio_cv": {name: cv(values) for name, values in ratios.items()},
        "rankings": rankings,
        "ranking_stable": all(ranking == rankings[0] for ranking in rankings),
        "warmup_passes": {"min": min(warmups), "max": max(warmups)},
        "gpu_state": _spans(states),
    }


def _spans(states: list[dict[str, float]]) -> dict[str, list[float]]:
    """[min, max] of each GPU reading over the measurements (empty without NVML)."""
    keys = sorted({key for state in states for key in state})
    return {
        key: [min(s[key] for s in states if key in s), max(s[key] for s in states if key in s)]
        for key in keys
    }


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def summary_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"GPU check on {report['device']} ({report['machine']}), torch {report['torch']}, "
        f"{report['seconds']:.0f} s in all" + (" (DRY RUN on CPU)" if report["dry_run"] else ""),
        "",
        "| trials per GPU | finished (failed) | trials/hour | 200 trials, projected | "
        "GPU busy | overhead in worker (of trial) | whole overhead, 1 at a time | "
        "setup cold / warm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["search"]:
        lines.append(
            f"| {row['per_gpu']} | {row['finished']} ({row['failed']}) | "
            f"{row['trials_per_hour']:.0f} | {_fmt(row['projected_minutes'], '{:.1f} min')} | "
            f"{_fmt(row['gpu_busy'], '{:.0%}')} | "
            f"{_fmt(row['worker_overhead_s'], '{:.2f} s')} "
            f"({_fmt(row['worker_overhead_share'], '{:.1%}')}) | "
            f"{_fmt(row['gap_overhead_s'], '{:.2f} s')} | "
            f"{_fmt(row['cold_setup_s'], '{:.2f}')} / {_fmt(row['warm_setup_s'], '{:.3f}')} s |"
        )
    throughput = report["throughput"]
    if throughput and "ratio" in throughput:
        ratio = throughput["ratio"]
        lines += [
            "",
            f"Proxy throughput, ours / the authors' loop: median {ratio['median']:.2f}x "
            f"(min {ratio['min']:.2f}, max {ratio['max']:.2f}; see throughput.log)",
        ]
    else:
        lines += ["", "Proxy throughput: no result (see throughput.log)"]
    latency = report["latency"]
    lines += ["", *_latency_lines(latency, "alone"), ""]
    lines += _latency_lines(latency["with_neighbour"], "with a busy neighbour")
    return "\n".join(lines) + "\n"


def _latency_lines(latency: dict[str, Any], arm: str) -> list[str]:
    state = "; ".join(
        f"{key.removeprefix('latency_gpu_')} {low:g}-{high:g}"
        for key, (low, high) in latency["gpu_state"].items()
    )
    return [
        f"Preset latency {arm}, batch 1, {len(latency['rankings'])} rounds on "
        f"{latency['device']}: "
        + ", ".join(
            f"{name} {latency['median_ms'][name]:.3f} ms (CV {latency['cv'][name]:.1%}, "
            f"ratio CV {latency['ratio_cv'][name]:.1%})"
            for name in latency["median_ms"]
        )
        + f"; ranking {'the same' if latency['ranking_stable'] else 'NOT the same'} "
        f"in every round ({' < '.join(latency['rankings'][0])} first); warm-up "
        f"{latency['warmup_passes']['min']}-{latency['warmup_passes']['max']} passes"
        + (f"; {state}" if state else "; no NVML readings"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 archive or ImageFolder root")
    parser.add_argument("--out", required=True, help="directory for the logs and summary")
    parser.add_argument("--cache-dir", default="/tmp/threshnet-cache")
    parser.add_argument("--search-seconds", type=float, default=110.0, help="per study")
    parser.add_argument("--per-gpu", default="1,2,4", help="trials sharing the GPU, per study")
    parser.add_argument("--latency-rounds", type=int, default=5)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny settings")
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_split("train", data_dir=args.data, cache_dir=args.cache_dir)  # decode once, untimed
    print(f"data ready in {time.perf_counter() - started:.0f} s", flush=True)
    results = []
    for per_gpu in (int(value) for value in args.per_gpu.split(",")):
        results.append(run_search(args, per_gpu))
        print(f"search, {per_gpu} per GPU: {asdict(results[-1])}", flush=True)
    throughput = run_throughput(args)
    print(f"throughput: {throughput}", flush=True)
    latency = run_latency_arms(args)
    print(f"latency: {latency}", flush=True)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    report = {
        "device": device_name(device),
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "dry_run": args.dry_run,
        "seconds": time.perf_counter() - started,
        "search": [asdict(result) for result in results],
        "throughput": throughput,
        "latency": latency,
    }
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    text = summary_markdown(report)
    (out / "summary.md").write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
