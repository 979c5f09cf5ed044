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
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from threshnet.cli import (
    ArgumentParser,
    UserError,
    load_config_or_preset,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    resolve_device,
    unit_fraction,
)
from threshnet.fileio import atomic_write, atomic_write_text, remove_stale_temporaries
from threshnet.presets import PRESETS
from threshnet.training.batches import AUGMENTATIONS
from threshnet.training.data import DataError, check_same_classes, load_split
from threshnet.training.loops import (
    OPTIMIZERS,
    SCHEDULES,
    TrainSettings,
    evaluate,
    setup_training,
    train_epoch,
)

PROG = "threshnet.train"
CHECKPOINT_KIND = "threshnet-train-checkpoint"
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")

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
    parser.add_argument("--seed", type=non_negative_int, default=0, help="of weights and batches")
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


def _read_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # never unpickle code; anything unreadable is refused
        # torch's own message advises weights_only=False, i.e. running the file's code
        raise UserError(
            f"{path} is not a readable threshnet checkpoint (it was not written by "
            "threshnet.train, or is damaged); move it away or use another --out"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != CHECKPOINT_KIND:
        raise UserError(f"{path} is not a threshnet.train checkpoint")
    if checkpoint.get("identity") != identity:
        raise UserError(
            f"{path.parent} holds a run with another config or settings; use another --out"
        )
    return checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    source, config = load_config_or_preset(preset=args.preset, config_path=args.config)
    name = Path(source).stem
    settings = _settings(args)
    device = resolve_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out) if args.out else Path("runs") / "train" / f"{name}-seed{args.seed}"
    try:
        check_same_classes(args.data_dir, args.cache_dir)
        train_set = load_split("train", data_dir=args.data_dir, cache_dir=args.cache_dir)
        test_set = load_split("test", data_dir=args.data_dir, cache_dir=args.cache_dir)
    except DataError as error:
        raise UserError(str(error)) from None
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
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the run directory {out}: {error.strerror}") from None
    remove_stale_temporaries(out)
    checkpoint_path = out / "checkpoint.pt"
    checkpoint = _read_checkpoint(checkpoint_path, identity)

    run = setup_training(config, train_set, test_set, settings, device=device, seed=args.seed)
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    train_batches, test_batches = run.train_batches, run.eval_batches
    metrics: list[dict[str, Any]] = []
    start_epoch = 1
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        train_batches.generator.set_state(checkpoint["batch_generator"])
        metrics = checkpoint["metrics"]
        start_epoch = checkpoint["epoch"] + 1
        print(f"{PROG}: resuming {out} after epoch {checkpoint['epoch']}", flush=True)
    config.save(out / "config.json")
    started = time.perf_counter()
    for epoch in range(start_epoch, settings.epochs + 1):
        stats = train_epoch(model, train_batches, optimizer, scheduler, settings, epoch=epoch)
        test_loss, test_acc = evaluate(model, test_batches, settings)
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
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "batch_generator": train_batches.generator.get_state(),
            "metrics": metrics,
        }
        atomic_write(checkpoint_path, lambda temp, state=state: torch.save(state, temp))
        _write_metrics(out / "metrics.csv", metrics)
        best = max(metrics, key=lambda row: row["test_acc"])
        print(
            f"epoch {epoch}/{settings.epochs}  lr {stats.lr:.2e}  train loss {stats.loss:.4f} "
            f"acc {stats.accuracy:.4f}  test acc {test_acc:.4f} "
            f"(best {best['test_acc']:.4f} @ {best['epoch']})  {stats.seconds:.1f} s",
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
        **identity,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"final-epoch test accuracy {final['test_acc']:.4f}")
    print(
        f"best-epoch test accuracy  {best['test_acc']:.4f} (epoch {best['epoch']}; "
        "selected on the test set, as in the paper)"
    )
    print(f"run directory: {out}")
    return 0
