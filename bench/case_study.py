"""The evidence case study: does the proxy rank configs like longer training, and does the
search's winner beat ThreshNet79 when both are trained longer?

    python bench/case_study.py --scale cpu          # 2 CPU cores: ~30 h over several sessions
    python bench/case_study.py --scale gpu          # one GPU: ~6 h (estimated, not yet run)
    python bench/case_study.py --scale smoke        # --smoke's own proxy: ~1 h on 2 cores
    python bench/case_study.py --scale cpu --stage study   # one stage only

Stages, each a product command that resumes where it stopped (rerun the same line after a
kill or on the next machine; finished work is never redone):

1. ``study``: ``search.run`` on real CIFAR-10 (``--data-dir``, default the offline archive
   ``../shared/data/cifar10-jpeg.tar.xz``);
2. ``fidelity``: ``search.fidelity`` with a ladder of cheaper rungs, zero-cost rungs and a
   second proxy seed against the long budget (fidelity.csv/.json in the study);
3. ``full``: ``threshnet.train`` of the best config by the long budget among those faster
   than ThreshNet79 in the study's latency, beside ThreshNet79 and ThreshNet28, one recipe
   (not at the smoke scale, whose question is only how far ``--smoke``'s proxy ranks);
4. ``summary``: ``summary.json`` and ``summary.md`` (the tables of BENCHMARKS.md's
   "Proxy fidelity (real CIFAR-10)"), recomputed from the committed files alone.

Everything lands under ``--out`` (default ``bench/results/case-study-<scale>``): the study
directory (journal, trials.csv, manifest, fidelity.csv), the full-training runs' metrics,
and the logs. Durations: cpu measured on a 2-core Intel Xeon VM, two single-threaded
trainings at once (study 41 min; fidelity ~17 h for 16 configs: the long budget 30-108 min
a config, 2xall about a third of that, the rest under an hour in all; full training ~5 h,
estimated from the long budget's times); gpu estimated for one H100 from the GPU check's
throughput (study ~1 h, fidelity ~1 h for 24 configs at 10x the default's 2 epochs, full
training ~2 h);
smoke: ``search.run --smoke`` (the bundled subset, 24 trials) and its fidelity at 8x the
smoke proxy over 16 configs, about an hour on the same VM.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: the project's packages from the checkout
    sys.path.insert(0, str(REPO))

from search.setup.settings import DEFAULT_SETTINGS  # noqa: E402

DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.xz"
STAGES = ("study", "fidelity", "full", "summary")


@dataclass(frozen=True)
class Scale:
    """What one scale runs: the study's proxy, the fidelity ladder, the full training."""

    study: tuple[str, ...]  # search.run flags (besides --name/--out/--data-dir)
    fidelity: tuple[str, ...]  # search.fidelity flags
    full: tuple[str, ...]  # threshnet.train flags, the same for all three models; () none
    parallel_full: int  # full trainings at once
    bundled: bool = False  # the study trains on the bundled subset (--smoke), not --data-dir
    note: str = ""  # what the scale's fidelity figures do not say (studies.measured_fidelity)


# CPU: 2 epochs on 8,000 proxy-training images (batch 128: 125 optimiser steps), all 5,000
# validation images; 2 single-threaded trials at once (2 x 1 thread trains ~30 % more
# images per second than 1 x 2 threads on 2 cores). A trial takes about 2 minutes.
CPU = Scale(
    study=(
        "--trials",
        "32",
        "--epochs",
        "2",
        "--max-train-images",
        "8000",
        "--val-size",
        "5000",
        "--batch-size",
        "128",
        "--lr",
        "0.1",
        "--cpus-per-trial",
        "1",
        "--num-cpus",
        "2",
    ),
    fidelity=(
        "--long",
        "6xall",
        "--rungs",
        "1xproxy,4xproxy,2xall",
        "--select",
        "front,presets,stratified:16",
        "--max-concurrent",
        "2",
    ),
    full=(
        "--epochs",
        "15",
        "--batch-size",
        "128",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--weight-decay",
        "5e-4",
        "--schedule",
        "onecycle",
        "--label-smoothing",
        "0.1",
        "--augment",
        "crop-flip",
        "--normalize",
        "--device",
        "cpu",
    ),
    parallel_full=2,
)

# GPU: the default proxy (search.setup.settings: 2 epochs on all 45,000 images), 200
# trials; fidelity at 10x its epochs on 24 configs, with 1 epoch and twice its epochs as
# rungs; full training at the authors' recipe (threshnet.train's defaults: Adam 1e-3, 200
# epochs, batch 100, multistep at 75/150).
DEFAULT_EPOCHS = DEFAULT_SETTINGS.train.epochs
GPU = Scale(
    study=("--trials", "200"),
    fidelity=(
        "--long",
        f"{10 * DEFAULT_EPOCHS}xproxy",
        "--rungs",
        f"1xproxy,{2 * DEFAULT_EPOCHS}xproxy",
        "--select",
        "front,presets,stratified:24",
    ),
    full=("--epochs", "200"),
    parallel_full=1,
)

# Smoke: --smoke's own proxy (3 epochs on 3,000 images of the bundled subset, 500
# validation images) against 8 epochs on the same images, over 16 of 24 trials: what the
# smoke study's report can say about its own front.
SMOKE = Scale(
    study=("--smoke", "--trials", "24", "--num-cpus", "2"),
    fidelity=(
        "--long",
        "8xproxy",
        "--rungs",
        "1xproxy",
        "--select",
        "front,presets,stratified:16",
        "--max-concurrent",
        "2",
    ),
    full=(),
    parallel_full=0,
    bundled=True,
    note=(
        "The long budget is itself 8 epochs on the same 3,000 images, where the smallest "
        "networks do best (parameter count ranks at tau -0.63): a demonstration's figure, "
        "not evidence about real training (see the cpu case study)"
    ),
)

SCALES = {"cpu": CPU, "gpu": GPU, "smoke": SMOKE}
FULL_MODELS = ("winner", "threshnet79", "threshnet28")


def _run(command: list[str], log: Path) -> None:
    """Run one stage's command, its output both shown and appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + " ".join(command), flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("a") as sink:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sink.write(line)
            sink.flush()
        code = process.wait()
    if code != 0:
        raise SystemExit(f"case_study: {command[2]} exited {code}; see {log}")


def stage_study(scale: Scale, out: Path, data_dir: str) -> None:
    """The search: resumes the study in ``out/study`` up to its trial count."""
    _run(
        [
            sys.executable,
            "-m",
            "search.run",
            "--name",
            "study",
            "--out",
            str(out),
            *(() if scale.bundled else ("--data-dir", data_dir)),
            *scale.study,
        ],
        out / "logs" / "study.log",
    )


def stage_fidelity(scale: Scale, out: Path) -> None:
    """The fidelity ladder on the study: resumes from fidelity.csv."""
    _run(
        [sys.executable, "-m", "search.fidelity", str(out / "study"), *scale.fidelity],
        out / "logs" / "fidelity.log",
    )


def stage_full(scale: Scale, out: Path, data_dir: str) -> None:
    """Full training of the winner, ThreshNet79 and ThreshNet28 (resumable runs)."""
    if not scale.full:
        print("case_study: this scale has no full-training stage", flush=True)
        return
    from case_study_full import full_training  # bench/ is this script's directory

    full_training(scale.full, out, data_dir, parallel=scale.parallel_full, run=_run)


def stage_summary(out: Path) -> None:
    """summary.json and summary.md from the committed files."""
    from case_study_summary import write_summary

    write_summary(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/case_study.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--scale", choices=sorted(SCALES), required=True)
    parser.add_argument("--stage", choices=STAGES, help="run this stage only (default: all)")
    parser.add_argument("--data-dir", default=str(DEFAULT_ARCHIVE), help="CIFAR-10 (%(default)s)")
    parser.add_argument("--out", help="results (bench/results/case-study-<scale>)")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    out = Path(args.out or REPO / "bench" / "results" / f"case-study-{args.scale}").resolve()
    if not scale.bundled and not Path(args.data_dir).exists():
        parser.error(f"--data-dir {args.data_dir} does not exist")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(vars(scale) | {"scale": args.scale}, indent=1))
    stages = (args.stage,) if args.stage else STAGES
    for stage in stages:
        if stage == "study":
            stage_study(scale, out, args.data_dir)
        elif stage == "fidelity":
            stage_fidelity(scale, out)
        elif stage == "full":
            stage_full(scale, out, args.data_dir)
        else:
            stage_summary(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
