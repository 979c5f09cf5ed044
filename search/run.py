"""``python -m search.run``: search the ThreshNet family for accuracy/latency trade-offs.

    python -m search.run --trials 200 --data-dir /data/cifar10
    python -m search.run --smoke          # CPU, minutes, on the bundled CIFAR-10 subset
    python -m search.run --simulate --trials 1000 --cpus-per-trial 0.05   # size the driver

Rerunning with the same ``--name`` resumes the study up to ``--trials`` finished trials.
Study-defining flags (space, proxy training, latency protocol, caps, sampler, seed) are
stored in the study's manifest; on resume, omitted flags keep their stored values and a
flag that contradicts them is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import math
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import torch

from search.driver.runner import run_study
from search.methods.samplers import GP_SHARE, GP_TRIALS, SAMPLERS
from search.methods.surrogates import DEFAULT_SURROGATE, SURROGATES, Simulation
from search.setup.journal import repair_journal
from search.setup.library_log import LIBRARY_LOG, library_output_to
from search.setup.preflight import check_settings
from search.setup.provenance import new_manifest
from search.setup.proxy_data import prepare_data
from search.setup.settings import (
    DEFAULT_SETTINGS,
    NORMAL,
    QUIET,
    SCHEDULERS,
    SMOKE_SETTINGS,
    SMOKE_TRIALS,
    VERBOSE,
    RunResources,
    StudySettings,
)
from search.setup.study import StudyDirectory
from search.tasks.cluster import check_reachable, stop_on_sigterm
from space import DEFAULT_SPACE, SPACE_VERSION
from threshnet.baselines import BASELINES, parse_baselines
from threshnet.cli import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    ArgumentParser,
    UserError,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_cli,
    sigterm_received,
    unit_fraction,
)
from threshnet.fileio import remove_stale_temporaries
from threshnet.steady_latency import BACKENDS, CLOCKS
from threshnet.training.bundled import bundled_cifar10
from threshnet.training.data import CacheEntry
from threshnet.training.loops import OPTIMIZERS, SCHEDULES

PROG = "search.run"
DEFAULT_TRIALS = 200

# Study-defining flags are named after the settings field they set: a training flag after
# its TrainSettings field, a latency flag after its LatencyProtocol field with a
# "latency_" prefix, a cap after its CostCaps field, and the rest after StudySettings'.
LATENCY_PREFIX = "latency_"
MAX_NAME_BYTES = 200  # below the usual 255-byte limit, leaving room for temporary names


def _val_size(text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a fraction, got {text!r}") from None
    if value.is_integer() and value >= 1:
        return int(value)
    if 0 < value < 1:
        return value
    raise argparse.ArgumentTypeError(f"expected a count >= 1 or a fraction in (0, 1), got {text}")


def _baselines(text: str) -> tuple[str, ...]:
    try:
        return parse_baselines(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _above_one(text: str) -> float:
    value = positive_float(text)
    if not value > 1:
        raise argparse.ArgumentTypeError(f"expected a number above 1, got {text}")
    return value


def _durations(text: str) -> tuple[float, float]:
    """``MEAN[,SPREAD]`` seconds of a simulated trial."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(math.isfinite(value) for value in values):
        raise argparse.ArgumentTypeError(f"expected MEAN or MEAN,SPREAD in seconds, got {text!r}")
    mean, spread = values[0], values[1] if len(values) == 2 else 0.0
    try:
        Simulation(seconds=mean, spread=spread).validate()
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return mean, spread


def _defaults(name: str) -> str:
    """'(X)' or '(X; with --smoke Y)': a study-defining flag's defaults, by settings field."""

    def value(settings: StudySettings) -> Any:
        for section in (settings, settings.train, settings.latency):
            if name in {field.name for field in dataclasses.fields(section)}:
                return getattr(section, name)
        raise KeyError(name)

    default, smoke = value(DEFAULT_SETTINGS), value(SMOKE_SETTINGS)
    shown = "all" if default is None else default
    return f"({shown})" if smoke == default else f"({shown}; with --smoke {smoke})"


def _parser() -> ArgumentParser:
    unset = argparse.SUPPRESS  # study-defining flags: absent unless given
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trials",
        type=positive_int,
        help=f"finished trials wanted (200; with --smoke {SMOKE_TRIALS})",
    )
    parser.add_argument("--name", help="study name (default: generated); reuse it to resume")
    parser.add_argument("--out", default="runs", help="parent of study directories (runs)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a CPU-sized study for trying: 3 epochs on 3,000 images, by default of the "
        "CIFAR-10 subset bundled with the package",
    )
    parser.add_argument(
        "--storage", help="Optuna database URL (default: a journal file in the study directory)"
    )
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-q", "--quiet", action="store_true", help="print only errors and the summary"
    )
    loudness.add_argument(
        "-v", "--verbose", action="store_true", help="also Ray's own output and the workers'"
    )
    parser.add_argument(
        "--repair-journal",
        action="store_true",
        help="cut a journal damaged in the middle back to the operations before the damage",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir",
        default=unset,
        help="ImageFolder root (train/<class>/*, test/<class>/*) or an archive of one "
        "(default: torchvision's CIFAR-10, downloaded; with --smoke, the bundled subset)",
    )
    data.add_argument("--cache-dir", help="decoded-data cache (~/.cache/threshnet-search)")
    data.add_argument(
        "--val-size",
        type=_val_size,
        default=unset,
        help=f"validation images carved from the training split: count or fraction "
        f"{_defaults('val_size')}",
    )
    proxy = parser.add_argument_group("proxy training")
    proxy.add_argument(
        "--epochs", type=positive_int, default=unset, help=f"per trial {_defaults('epochs')}"
    )
    proxy.add_argument(
        "--train-fraction",
        type=unit_fraction,
        default=unset,
        help=f"of the proxy-training images, stratified {_defaults('train_fraction')}",
    )
    proxy.add_argument(
        "--max-train-images",
        type=positive_int,
        default=unset,
        help=f"cap on proxy-training images, stratified {_defaults('max_train_images')}",
    )
    proxy.add_argument(
        "--batch-size", type=positive_int, default=unset, help=_defaults("batch_size")
    )
    proxy.add_argument(
        "--optimizer", choices=OPTIMIZERS, default=unset, help=_defaults("optimizer")
    )
    proxy.add_argument(
        "--lr", type=positive_float, default=unset, help=f"peak learning rate {_defaults('lr')}"
    )
    proxy.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=unset,
        help=f"not on BN and bias {_defaults('weight_decay')}",
    )
    proxy.add_argument("--schedule", choices=SCHEDULES, default=unset, help=_defaults("schedule"))
    proxy.add_argument(
        "--input-size",
        type=positive_int,
        default=unset,
        help=f"images are resized to this square size {_defaults('input_size')}",
    )
    latency = parser.add_argument_group("latency")
    latency.add_argument(
        "--latency-input-size",
        type=positive_int,
        default=unset,
        help="input size of the timed pass (default: --input-size)",
    )
    latency.add_argument(
        "--latency-device",
        choices=("trial", "cpu", "cuda"),
        default=unset,
        help="where latency is timed; trial: the trial's own device (trial)",
    )
    latency.add_argument(
        "--latency-batch-size",
        type=positive_int,
        default=unset,
        help="also time this batch size and record ms per image (default: batch 1 only)",
    )
    latency.add_argument(
        "--latency-repeats",
        type=positive_int,
        default=unset,
        help=f"timed passes in all, spread over the rounds {_defaults('repeats')}",
    )
    latency.add_argument(
        "--latency-warmup",
        type=non_negative_int,
        default=unset,
        help=f"untimed passes first {_defaults('warmup')}",
    )
    latency.add_argument(
        "--latency-rounds",
        type=positive_int,
        default=unset,
        help=f"rounds interleaved with the reference network, ThreshNet28 {_defaults('rounds')}",
    )
    latency.add_argument(
        "--latency-backend",
        choices=BACKENDS,
        default=unset,
        help="what runs the timed passes: eager PyTorch, or ONNX Runtime on each network's "
        f"checked ONNX export (needs pip install -e '.[onnx]') {_defaults('backend')}",
    )
    latency.add_argument(
        "--latency-clock",
        choices=CLOCKS,
        default=unset,
        help="what a pass's time is: the thread's CPU time where a CPU times on one thread "
        f"(robust to other work on the machine; wall time elsewhere), or wall time "
        f"{_defaults('clock')}",
    )
    search = parser.add_argument_group("search")
    search.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=unset,
        help=f"Optuna sampler {_defaults('sampler')}: gp-tpe is Gaussian-process BO for the "
        f"first {GP_TRIALS} complete trials, then multivariate TPE (cheap per suggestion at "
        "thousands of trials), and TPE meanwhile too whenever GP's suggestions have taken "
        "over --gp-share of the driver's time (short trials, many in flight); gp keeps GP "
        "throughout (seconds per suggestion from about 50 trials, growing with the trials "
        "told)",
    )
    search.add_argument(
        "--seed",
        type=non_negative_int,
        default=unset,
        help=f"of the sampler, the split and each trial's training {_defaults('seed')}",
    )
    search.add_argument("--space", metavar="FILE.toml", default=unset, help="range overrides")
    search.add_argument(
        "--max-params",
        type=positive_int,
        default=unset,
        help="cap on parameters: configs above it are recorded as infeasible, never trained",
    )
    search.add_argument(
        "--max-macs",
        type=positive_int,
        default=unset,
        help="cap on multiply-accumulates at --input-size, like --max-params",
    )
    search.add_argument(
        "--max-latency-ms",
        type=positive_float,
        default=unset,
        help="latency cap, checked after the latency is measured and before training",
    )
    search.add_argument(
        "--no-presets",
        action="store_true",
        default=unset,
        help="do not queue the published ThreshNet28/79/95 first",
    )
    search.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default=unset,
        help="fifo: every trial trains --epochs (default); mo-asha: trials are judged at "
        "epoch rungs (1, 2, 4 for --epochs 4) and only the top 1/--reduction-factor of a "
        "rung, by non-dominated rank on (accuracy, latency), train on",
    )
    search.add_argument(
        "--reduction-factor",
        type=_above_one,
        default=unset,
        help=f"mo-asha's eta {_defaults('reduction_factor')}",
    )
    search.add_argument(
        "--baselines",
        type=_baselines,
        default=(),
        metavar="NAMES",
        help=f"also train and time these networks on the study's footing, after its "
        f"trials (never given to the sampler): comma-separated from {', '.join(BASELINES)}, "
        "or all",
    )
    simulation = parser.add_argument_group("simulation (size a driver or a cluster first)")
    simulation.add_argument(
        "--simulate",
        nargs="?",
        const=DEFAULT_SURROGATE,
        choices=SURROGATES,
        default=unset,
        metavar="SURROGATE",
        help="run the study through Ray Tune, the sampler and the storage with simulated "
        "trials: each sleeps for a drawn time and returns a surrogate's objectives "
        f"computed from the config's costs (no data, no training, no torch on the "
        f"workers); SURROGATE: {' or '.join(SURROGATES)} ({DEFAULT_SURROGATE})",
    )
    simulation.add_argument(
        "--simulate-seconds",
        type=_durations,
        default=unset,
        metavar="MEAN[,SPREAD]",
        help=f"a simulated trial lasts MEAN +- SPREAD seconds, uniformly drawn "
        f"({Simulation.seconds:g},{Simulation.spread:g})",
    )
    ray = parser.add_argument_group("resources")
    ray.add_argument(
        "--gpus-per-trial",
        type=non_negative_float,
        help="fractions allowed (default: 1 when the cluster has GPUs, else 0)",
    )
    ray.add_argument("--cpus-per-trial", type=positive_float, help="(1)")
    ray.add_argument(
        "--max-concurrent", type=positive_int, help="trials at once (default: as resources allow)"
    )
    ray.add_argument(
        "--gp-share",
        type=unit_fraction,
        help=f"gp-tpe: the most of the driver's time GP's suggestions may take before the "
        f"hand-over; past it, trials go to TPE ({GP_SHARE}; 1: GP suggests every trial until "
        "then, however long trials in flight wait for it)",
    )
    ray.add_argument(
        "--no-final-pass",
        action="store_true",
        help="skip re-timing the front when the study reaches --trials "
        "(python -m studies.remeasure does it later)",
    )
    ray.add_argument("--address", help="join this Ray cluster instead of starting one")
    ray.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray (all)")
    return parser


def _given(section: Any, given: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The fields of the dataclass ``section`` that ``given`` sets (as ``prefix + field``)."""
    return {
        field.name: given[prefix + field.name]
        for field in dataclasses.fields(section)
        if prefix + field.name in given
    }


def build_settings(args: argparse.Namespace, base: StudySettings) -> StudySettings:
    """``base`` with the explicitly given study-defining flags applied."""
    given = vars(args)
    sections = {"space", "train", "latency", "caps", "data_dir"}  # set apart below
    changes = {key: value for key, value in _given(base, given).items() if key not in sections}
    changes["train"] = dataclasses.replace(base.train, **_given(base.train, given))
    changes["latency"] = dataclasses.replace(
        base.latency, **_given(base.latency, given, LATENCY_PREFIX)
    )
    changes["caps"] = dataclasses.replace(base.caps, **_given(base.caps, given))
    if "space" in given:
        try:
            changes["space"] = DEFAULT_SPACE.load_overrides(given["space"])
        except ValueError as error:
            raise UserError(str(error)) from None
    if "data_dir" in given:
        changes["data_dir"] = str(Path(given["data_dir"]).resolve())
    if "no_presets" in given:
        changes["enqueue_presets"] = False
    if "simulate" in given or "simulate_seconds" in given:
        if base.simulation is None and "simulate" not in given:
            raise UserError("--simulate-seconds sets the trials of --simulate: give both")
        current = base.simulation or Simulation()
        seconds, spread = given.get("simulate_seconds", (current.seconds, current.spread))
        changes["simulation"] = Simulation(
            surrogate=given.get("simulate", current.surrogate), seconds=seconds, spread=spread
        )
    return dataclasses.replace(base, **changes)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            item
            for key in sorted(set(old) | set(new))
            for item in _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def _resources(args: argparse.Namespace, smoke: bool, simulated: bool) -> RunResources:
    return RunResources(
        trials=args.trials or (SMOKE_TRIALS if smoke else DEFAULT_TRIALS),
        cpus_per_trial=args.cpus_per_trial or 1.0,
        gpus_per_trial=args.gpus_per_trial
        if args.gpus_per_trial is not None
        else (0.0 if smoke or simulated else None),
        max_concurrent=args.max_concurrent,
        address=args.address,
        num_cpus=args.num_cpus,
        cache_dir=args.cache_dir,
        final_pass=not args.no_final_pass,
        verbosity=QUIET if args.quiet else VERBOSE if args.verbose else NORMAL,
        baselines=args.baselines,
        gp_share=args.gp_share or GP_SHARE,
    )


def _check_local_gpus(args: argparse.Namespace) -> None:
    if args.gpus_per_trial and not args.address and not torch.cuda.is_available():
        raise UserError(
            f"--gpus-per-trial {args.gpus_per_trial:g} needs a GPU, but this machine has no "
            "usable CUDA GPU (use --address to run on a Ray cluster that has GPUs)"
        )


def _open_study(
    args: argparse.Namespace, directory: StudyDirectory, name: str
) -> tuple[StudySettings, dict[str, Any], CacheEntry | None]:
    """Settings, manifest and training-data cache (None for a simulated study, which
    reads no data) of a new or resumed study."""
    manifest = directory.read_manifest()
    if manifest is None:
        settings = build_settings(args, SMOKE_SETTINGS if args.smoke else DEFAULT_SETTINGS)
        if settings.simulation is not None:
            _check_simulation(args)
            check_settings(settings)
            manifest = new_manifest(name, settings, args.storage)
            directory.write_manifest(manifest)
            return settings, manifest, None
        if args.smoke and settings.data_dir is None:
            try:
                bundled = bundled_cifar10()
            except FileNotFoundError as error:
                raise UserError(str(error)) from None
            settings = dataclasses.replace(settings, data_dir=str(bundled))
        check_settings(settings)
        train_cache, classes = prepare_data(settings, args.cache_dir, new_study=True)
        space = dataclasses.replace(settings.space, num_classes=classes)
        settings = dataclasses.replace(settings, space=space)
        manifest = new_manifest(name, settings, args.storage)
        directory.write_manifest(manifest)
        return settings, manifest, train_cache
    if args.storage is not None and args.storage != manifest.get("storage"):
        stored_storage = manifest.get("storage") or "its journal file"
        raise UserError(
            f"study {directory.root} uses {stored_storage} as its Optuna storage; "
            "omit --storage to resume it"
        )
    try:
        stored = StudySettings.from_dict(manifest["settings"])
    except (ValueError, TypeError, KeyError) as error:
        versions = manifest.get("versions")
        written_by = (versions if isinstance(versions, dict) else {}).get(
            "threshnet-search", "an unknown version"
        )
        raise UserError(
            f"study {directory.root} was written by threshnet-search {written_by} and its "
            f"settings cannot be resumed by this version ({_one_line(error)}); report and "
            "export still read it; continue the search in a new study (another --name)"
        ) from None
    if stored.space.version != SPACE_VERSION:
        kind = {1: " (conditional parameters)"}.get(stored.space.version, " (a newer one)")
        raise UserError(
            f"study {directory.root} was sampled with the search-space encoding of version "
            f"{stored.space.version}{kind}; this version samples encoding {SPACE_VERSION}, "
            "so it cannot add trials to it: report and export still read it; continue the "
            "search in a new study (another --name)"
        )
    settings = build_settings(args, stored)
    differences = _differences(stored.to_dict(), settings.to_dict())
    if differences:
        raise UserError(
            f"study {directory.root} was created with other settings "
            f"({'; '.join(differences)}); omit those flags to resume, or use a new --name"
        )
    check_settings(settings, networks=False)  # its space and presets passed when it was made
    print(f"{PROG}: resuming study {directory.root}", file=sys.stderr)
    if settings.simulation is not None:
        _check_simulation(args)
        return settings, manifest, None
    train_cache, classes = prepare_data(settings, args.cache_dir)
    if classes != settings.space.num_classes:
        raise UserError(
            f"the data now has {classes} classes but the study was created with "
            f"{settings.space.num_classes}; use a new --name"
        )
    return settings, manifest, train_cache


def _check_simulation(args: argparse.Namespace) -> None:
    """Refuse what a simulated study cannot do."""
    if args.baselines:
        raise UserError(
            "--baselines trains and times real networks; a simulated study (--simulate) "
            "has nothing to compare them with"
        )


def _check_name(name: str) -> None:
    """A study name is one plain directory name the file system can hold."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise UserError(f"--name {name!r} must be a plain, non-empty directory name")
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        raise UserError(
            f"--name is {len(os.fsencode(name))} bytes long; a directory name holds at most "
            f"{MAX_NAME_BYTES}"
        )


def _one_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return text or type(error).__name__


def _check_journal(directory: StudyDirectory, *, cut_middle: bool) -> None:
    """Cut a journal tail that an interrupted write left unreadable (one line says so)."""
    try:
        message = repair_journal(directory.journal_path, cut_middle=cut_middle)
    except ValueError as error:
        raise UserError(str(error)) from None
    if message:
        print(f"{PROG}: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop_on_sigterm(PROG)
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    _check_local_gpus(args)
    if args.address:
        check_reachable(args.address)  # before anything is written: Ray would retry minutes
    name = dt.datetime.now().strftime("study-%Y%m%d-%H%M%S") if args.name is None else args.name
    _check_name(name)
    directory = StudyDirectory(Path(args.out) / name)
    is_new = not directory.root.exists()
    foreign = (
        [p for p in directory.root.glob("*") if p != directory.lock_path] if not is_new else []
    )
    if foreign and directory.read_manifest() is None:
        raise UserError(f"{directory.root} exists and is not a threshnet-search study directory")
    directory.create()
    with directory.run_lock():
        remove_stale_temporaries(directory.root)
        _check_journal(directory, cut_middle=args.repair_journal)
        try:
            settings, manifest, train_cache = _open_study(args, directory, name)
        except UserError:
            if is_new:  # leave nothing behind for a study that never started
                shutil.rmtree(directory.root, ignore_errors=True)
            raise
        resources = _resources(args, args.smoke, settings.simulation is not None)
        if resources.verbosity >= VERBOSE:
            summary = run_study(directory, settings, resources, manifest, train_cache)
        else:
            import ray  # noqa: F401  (first: its import sets up the "ray" logger's handlers)

            with library_output_to(directory.root / LIBRARY_LOG):
                summary = run_study(directory, settings, resources, manifest, train_cache)
    if sigterm_received():
        print(f"{PROG}: stopped by SIGTERM", file=sys.stderr)
    for line in summary.lines():
        print(line)
    if sigterm_received():
        return EXIT_TERMINATED
    return EXIT_INTERRUPTED if summary.stopped_early else 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
