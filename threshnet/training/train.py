"""``python -m threshnet.train``: full training of a config on CIFAR-10 (or any ImageFolder).

    python -m threshnet.train --preset threshnet79 --data-dir /data/cifar10
    python -m threshnet.train --config runs/s/configs/trial-0012.json --epochs 50 --device cuda

Defaults reproduce the authors' recipe: Adam 1e-3, MultiStepLR milestones 75/150 with
gamma 0.5 (stepped per 1-based epoch), 200 epochs, batch 100, horizontal flip only, no
normalisation, fp32. Trains on the whole training split and evaluates on the test split
after every epoch. Reports the final-epoch test accuracy and, separately, the best-epoch
test accuracy (the number the paper reports, selected on the test set itself).

Every epoch ends with an atomic checkpoint; running the same command again resumes from
the last complete epoch and gives the same results as an uninterrupted run.

It starts with a banner (model, data, device, recipe, run directory), shows progress
within each epoch (images done, images/s, the epoch's ETA) and ends each epoch with a line
that carries the run's ETA. ``--max-train-images`` and ``--max-test-images`` train and test
on class-stratified subsets, for quick runs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from threshnet.cli import (
    ArgumentParser,
    UserError,
    format_duration,
    load_config_or_preset,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    resolve_device,
    unit_fraction,
)
from threshnet.config import ThreshNetConfig
from threshnet.costs import static_costs
from threshnet.fileio import atomic_write, atomic_write_text, remove_stale_temporaries
from threshnet.latency import device_name
from threshnet.model import ThreshNet, build_model
from threshnet.presets import PRESETS
from threshnet.training.batches import AUGMENTATIONS
from threshnet.training.data import (
    DataError,
    ImageSet,
    check_same_classes,
    load_split,
    stratified_subset,
)
from threshnet.training.loops import (
    OPTIMIZERS,
    SCHEDULES,
    TrainSettings,
    evaluate,
    layout_identity,
    setup_training,
    train_epoch,
)

PROG = "threshnet.train"
CHECKPOINT_KIND = "threshnet-train-checkpoint"
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
# Progress within an epoch, as (at least seconds, at least this fraction of the epoch)
# between two lines: rewritten in place on a terminal, plain lines (rarer) in a log.
PROGRESS_TERMINAL = (5.0, 0.10)
PROGRESS_LOG = (10.0, 0.25)

AUTHORS_RECIPE = TrainSettings(
    epochs=200,
    batch_size=100,
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    schedule="multistep",
    milestones=(75, 150),
    gamma=0.5,
    label_smoothing=0.0,
    augment="flip",
    normalize=False,
    amp=False,
    channels_last=True,
)


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="FILE.json", help="a config (e.g. from studies.export)")
    source.add_argument("--preset", choices=sorted(PRESETS), help="a published model")
    parser.add_argument("--data-dir", help="ImageFolder dir or archive (default: torchvision)")
    parser.add_argument("--cache-dir", help="decoded-data cache")
    parser.add_argument("--out", help="run directory (runs/train/<name>-seed<seed>)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (cuda when available)")
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="of weights, batches and subsets (default: 0)",
    )
    parser.add_argument(
        "--max-train-images",
        type=positive_int,
        metavar="N",
        help="train on a class-stratified subset of about N training images, for quick runs "
        "(default: all)",
    )
    parser.add_argument(
        "--max-test-images",
        type=positive_int,
        metavar="N",
        help="test on a class-stratified subset of about N test images, for quick runs "
        "(default: all)",
    )
    # Training flags: each flag's destination is the TrainSettings field of that name.
    parser.add_argument("--epochs", type=positive_int, help="training epochs")
    parser.add_argument("--batch-size", type=positive_int, help="training batch")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="the optimiser")
    parser.add_argument("--lr", type=positive_float, help="(peak) learning rate")
    parser.add_argument(
        "--weight-decay", type=non_negative_float, help="not on BN and bias parameters"
    )
    parser.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    parser.add_argument(
        "--milestones", type=positive_int, nargs="*", help="multistep: epochs where lr drops"
    )
    parser.add_argument("--gamma", type=unit_fraction, help="multistep: lr factor per drop")
    parser.add_argument("--label-smoothing", type=non_negative_float, help="of the loss")
    parser.add_argument("--augment", choices=AUGMENTATIONS, help="training augmentation")
    parser.add_argument("--normalize", action="store_true", help="per-channel mean/std")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    parser.add_argument("--input-size", type=positive_int, help="square image size")
    parser.add_argument("--eval-batch-size", type=positive_int, help="test batch")
    parser.set_defaults(**AUTHORS_RECIPE.to_dict())  # every setting, flag or not
    return parser


def _settings(args: argparse.Namespace) -> TrainSettings:
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainSettings)}
    settings = TrainSettings.from_dict(values)
    try:
        settings.validate()
    except ValueError as error:
        raise UserError(str(error)) from None
    return settings


def _write_metrics(path: Path, metrics: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics)
    atomic_write_text(path, buffer.getvalue())


def _shown(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


def _differences(old: Any, new: dict[str, Any]) -> str:
    """What differs between a checkpoint's identity and this run's, in a few words."""
    if not isinstance(old, dict):
        return "an unknown identity"
    found = []
    for key in [*new, *(key for key in old if key not in new)]:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "settings" and isinstance(before, dict) and isinstance(after, dict):
            found += [
                f"{key}.{name} {_shown(before.get(name))} there, {_shown(after.get(name))} here"
                for name in sorted(set(before) | set(after))
                if before.get(name) != after.get(name)
            ]
        elif key == "config":
            found.append("another config")
        else:
            found.append(f"{key} {_shown(before)} there, {_shown(after)} here")
    return "; ".join(found)


def _load_checkpoint(path: Path, advice: str) -> dict[str, Any]:
    """A checkpoint this module wrote, loaded without running any of the file's code;
    UserError (``advice`` ends it) for anything else."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # never unpickle code; anything unreadable is refused
        # torch's own message advises weights_only=False, i.e. running the file's code
        raise UserError(
            f"{path} is not a readable threshnet checkpoint (it was not written by "
            f"threshnet.train, or is damaged); {advice}"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != CHECKPOINT_KIND:
        raise UserError(f"{path} is not a threshnet.train checkpoint")
    return checkpoint


@dataclass(frozen=True)
class TrainedModel:
    """The network a checkpoint holds, with what it was trained on."""

    model: ThreshNet  # the trained weights, on the CPU in eval mode
    input_size: int
    normalize: bool  # the inputs were normalised per channel (the statistics are not kept)
    epoch: int  # the last complete epoch


def load_trained_model(path: str | Path) -> TrainedModel:
    """The trained network of a ``threshnet.train`` checkpoint; UserError (one line) for
    a missing file or one that is not such a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    checkpoint = _load_checkpoint(path, "give a checkpoint.pt from a threshnet.train run")
    try:
        identity = checkpoint["identity"]
        config = ThreshNetConfig.from_dict(identity["config"])
        settings = TrainSettings.from_dict(identity["settings"])
        model = build_model(config)
        model.load_state_dict(checkpoint["model"])
        epoch = int(checkpoint["epoch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise UserError(f"{path} is a damaged threshnet.train checkpoint ({first})") from None
    return TrainedModel(model.eval(), settings.input_size, settings.normalize, epoch)


def _read_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    checkpoint = _load_checkpoint(path, "move it away or use another --out")
    if checkpoint.get("identity") != identity:
        raise UserError(
            f"{path.parent} holds a run with another config or settings "
            f"({_differences(checkpoint.get('identity'), identity)}); rerun with its "
            "settings to resume it, or use another --out"
        )
    return checkpoint


def _subset(data: ImageSet, limit: int | None, *, seed: int, flag: str, split: str) -> ImageSet:
    """A class-stratified subset of about ``limit`` images (each class keeps its share,
    rounded, as search.run's --max-train-images); all of ``data`` without a limit."""
    if limit is None or limit >= len(data):
        return data
    classes = len(torch.unique(data.labels))
    if limit < classes:
        raise UserError(
            f"{flag} {limit} is fewer than the {classes} classes of the {split} split; "
            "a class-stratified subset needs at least one image of each class"
        )
    return data.subset(stratified_subset(data.labels, limit / len(data), seed=seed))


def _si(value: float) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f} {prefix}"
    return f"{value:.0f}"


def _model_line(config: ThreshNetConfig, input_size: int) -> str:
    costs = static_costs(config, input_size)
    depths = "/".join(str(stage.depth) for stage in config.stages)
    growths = "/".join(str(stage.growth) for stage in config.stages)
    return (
        f"depth {config.depth}, threshold {config.threshold} ({config.threshold} dense + "
        f"{config.num_stages - config.threshold} harmonic stages), units {depths}, "
        f"growth {growths}; "
        f"{_si(costs.params)} params, {_si(costs.macs)} MACs at {input_size}x{input_size}; "
        f"{config.num_classes} classes"
    )


def _recipe_line(settings: TrainSettings, device: torch.device) -> str:
    optimizer = settings.optimizer
    if optimizer == "sgd":
        optimizer += f" (nesterov, momentum {settings.momentum:g})"
    if settings.schedule == "multistep":
        steps = ", ".join(str(milestone) for milestone in settings.milestones) or "none"
        schedule = f"multistep (x{settings.gamma:g} at epochs {steps})"
    elif settings.schedule == "onecycle":
        schedule = f"onecycle ({settings.warmup_fraction:.0%} warm-up)"
    else:
        schedule = settings.schedule
    if device.type == "cuda" and settings.amp:
        precision = "bf16 autocast"
    else:
        precision = "fp32" + (" (--amp is for CUDA only)" if settings.amp else "")
    return (
        f"{settings.epochs} epoch{'' if settings.epochs == 1 else 's'}, "
        f"batch {settings.batch_size}, {optimizer} lr {settings.lr:g}, "
        f"{schedule} schedule, weight decay {settings.weight_decay:g}, label smoothing "
        f"{settings.label_smoothing:g}, augment {settings.augment}, "
        f"{'normalised' if settings.normalize else 'not normalised'}, {precision}"
    )


def _split_text(
    data: ImageSet, full: ImageSet, what: str, limit: int | None, flag: str, seed: int
) -> str:
    if len(data) == len(full):
        return f"{what} {len(data)} images"
    return f"{what} {len(data)} of {len(full)} images ({flag} {limit}, stratified, seed {seed})"


def _print_banner(
    *,
    name: str,
    args: argparse.Namespace,
    config: ThreshNetConfig,
    settings: TrainSettings,
    data: tuple[ImageSet, ImageSet, ImageSet, ImageSet],
    device: torch.device,
    out: Path,
    checkpoint: dict[str, Any] | None,
) -> None:
    """What is about to run, printed before the first epoch."""
    train_set, test_set, full_train, full_test = data
    source = f"preset {args.preset}" if args.preset else f"config {args.config}"
    where = args.data_dir or "torchvision CIFAR-10"
    train = _split_text(
        train_set, full_train, "train", args.max_train_images, "--max-train-images", args.seed
    )
    test = _split_text(
        test_set, full_test, "test", args.max_test_images, "--max-test-images", args.seed
    )
    hardware = device_name(device)
    if device.type == "cpu":
        threads = torch.get_num_threads()
        hardware += f", {threads} thread{'' if threads == 1 else 's'}"
    if checkpoint is None:
        run = "new run"
    else:
        run = f"resuming after epoch {checkpoint['epoch']} of {settings.epochs}"
    lines = [
        f"{PROG}: {name} ({source})",
        f"  model     {_model_line(config, settings.input_size)}",
        f"  data      {where}: {train}, {test}, {len(train_set.classes)} classes",
        f"  device    {device} ({hardware})",
        f"  training  {_recipe_line(settings, device)}",
        f"  run       {out} ({run})",
    ]
    if len(train_set) < len(full_train) or len(test_set) < len(full_test):
        lines.append(
            "  note      this run uses a subset of the data: its accuracies are not "
            "comparable with full-data runs"
        )
    print("\n".join(lines), flush=True)


class _EpochProgress:
    """Progress lines while an epoch trains, from :func:`train_epoch`'s ``on_chunk`` hook
    (called after each chunk's synchronisation, so it adds none): images done, images/s
    and the epoch's ETA, at most every PROGRESS_TERMINAL / PROGRESS_LOG."""

    def __init__(self, *, total_images: int, epochs: int, stream: TextIO) -> None:
        self.total, self.epochs, self.stream = total_images, epochs, stream
        self.terminal = stream.isatty()
        self.epoch, self.started, self.last_time, self.last_images = 0, 0.0, 0.0, 0
        self.shown = False

    def start(self, epoch: int) -> None:
        self.epoch, self.shown = epoch, False
        self.started = self.last_time = time.perf_counter()
        self.last_images = 0

    def __call__(self, images: int) -> None:
        now = time.perf_counter()
        seconds, fraction = PROGRESS_TERMINAL if self.terminal else PROGRESS_LOG
        if (
            images >= self.total  # the epoch line comes next
            or now - self.last_time < seconds
            or images - self.last_images < fraction * self.total
        ):
            return
        self.last_time, self.last_images = now, images
        rate = images / max(now - self.started, 1e-9)
        self._show(
            f"  epoch {self.epoch}/{self.epochs}: {images}/{self.total} images "
            f"({images / self.total:.0%}), {rate:.0f} images/s, "
            f"epoch ETA {format_duration((self.total - images) / rate)}"
        )

    def testing(self, images: int) -> None:
        """On a terminal, replace a progress line with what runs next."""
        if self.terminal and self.shown:
            self._show(f"  epoch {self.epoch}/{self.epochs}: testing on {images} images")

    def end(self, *, keep: bool = False) -> None:
        """Clear the line being rewritten on a terminal, before the epoch's line (or, with
        ``keep``, end it there, when the run stops with an error)."""
        if self.terminal and self.shown:
            self.stream.write("\n" if keep else "\r\033[K")
            self.stream.flush()
        self.shown = False

    def _show(self, line: str) -> None:
        if self.terminal:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        else:
            print(line, file=self.stream, flush=True)
        self.shown = True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    source, config = load_config_or_preset(preset=args.preset, config_path=args.config)
    name = Path(source).stem
    settings = _settings(args)
    device = resolve_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out) if args.out else Path("runs") / "train" / f"{name}-seed{args.seed}"
    try:
        check_same_classes(args.data_dir, args.cache_dir)
        full_train = load_split("train", data_dir=args.data_dir, cache_dir=args.cache_dir)
        full_test = load_split("test", data_dir=args.data_dir, cache_dir=args.cache_dir)
    except DataError as error:
        raise UserError(str(error)) from None
    train_set = _subset(
        full_train, args.max_train_images, seed=args.seed, flag="--max-train-images", split="train"
    )
    test_set = _subset(
        full_test, args.max_test_images, seed=args.seed, flag="--max-test-images", split="test"
    )
    if len(train_set.classes) != config.num_classes:
        config = dataclasses.replace(config, num_classes=len(train_set.classes))
    try:
        config.validate(input_size=settings.input_size)
    except ValueError as error:
        raise UserError(str(error)) from None
    identity = {
        "config": config.to_dict(),
        "settings": settings.to_dict(),
        "seed": args.seed,
        "data": str(args.data_dir or "torchvision-cifar10"),
        **layout_identity(settings, device),
    }
    for key in ("max_train_images", "max_test_images"):  # only when set: older runs resume
        if getattr(args, key) is not None:
            identity[key] = getattr(args, key)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the run directory {out}: {error.strerror}") from None
    remove_stale_temporaries(out)
    checkpoint_path = out / "checkpoint.pt"
    checkpoint = _read_checkpoint(checkpoint_path, identity)
    _print_banner(
        name=name,
        args=args,
        config=config,
        settings=settings,
        data=(train_set, test_set, full_train, full_test),
        device=device,
        out=out,
        checkpoint=checkpoint,
    )

    run = setup_training(config, train_set, test_set, settings, device=device, seed=args.seed)
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    train_batches, test_batches = run.train_batches, run.eval_batches
    metrics: list[dict[str, Any]] = []
    start_epoch = 1
    if checkpoint is not None:
        run.load_state_dict(checkpoint)
        metrics = checkpoint["metrics"]
        start_epoch = checkpoint["epoch"] + 1
    config.save(out / "config.json")
    progress = _EpochProgress(
        total_images=len(train_set), epochs=settings.epochs, stream=sys.stdout
    )
    epoch_seconds: list[float] = []
    started = time.perf_counter()
    for epoch in range(start_epoch, settings.epochs + 1):
        epoch_started = time.perf_counter()
        progress.start(epoch)
        try:
            stats = train_epoch(
                model, train_batches, optimizer, scheduler, settings, epoch=epoch, on_chunk=progress
            )
            progress.testing(len(test_set))
            test_loss, test_acc = evaluate(model, test_batches, settings)
        except BaseException:  # Ctrl-C or an error: its message starts on a line of its own
            progress.end(keep=True)
            raise
        metrics.append(
            {
                "epoch": epoch,
                "lr": stats.lr,
                "train_loss": stats.loss,
                "train_acc": stats.accuracy,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "seconds": stats.seconds,
            }
        )
        state = {
            "kind": CHECKPOINT_KIND,
            "identity": identity,
            "epoch": epoch,
            **run.state_dict(),
            "metrics": metrics,
        }
        atomic_write(checkpoint_path, lambda temp, state=state: torch.save(state, temp))
        _write_metrics(out / "metrics.csv", metrics)
        best = max(metrics, key=lambda row: row["test_acc"])
        epoch_seconds.append(time.perf_counter() - epoch_started)
        left = sum(epoch_seconds) / len(epoch_seconds) * (settings.epochs - epoch)
        progress.end()
        print(
            f"epoch {epoch}/{settings.epochs}  lr {stats.lr:.2e}  train loss {stats.loss:.4f} "
            f"acc {stats.accuracy:.4f}  test acc {test_acc:.4f} "
            f"(best {best['test_acc']:.4f} @ {best['epoch']})  {stats.seconds:.1f} s  "
            f"ETA {format_duration(left)}",
            flush=True,
        )
    final, best = metrics[-1], max(metrics, key=lambda row: row["test_acc"])
    summary = {
        "name": name,
        "final_epoch_test_acc": final["test_acc"],
        "best_epoch_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "note": "best_epoch_test_acc is selected on the test set, as the paper reports it; "
        "final_epoch_test_acc is the unbiased figure",
        "epochs": settings.epochs,
        "device": str(device),
        "seconds_this_run": time.perf_counter() - started,
        "torch": torch.__version__,
        "train_images": len(train_set),
        "test_images": len(test_set),
        **identity,
        "max_train_images": args.max_train_images,
        "max_test_images": args.max_test_images,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"final-epoch test accuracy {final['test_acc']:.4f}")
    print(
        f"best-epoch test accuracy  {best['test_acc']:.4f} (epoch {best['epoch']}; "
        "selected on the test set, as in the paper)"
    )
    print(f"run directory: {out}")
    return 0
