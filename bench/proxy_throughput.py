"""Training throughput of the search's proxy loop against the ThreshNet authors' loop.

Reference: the training loop of the authors' ``main.py``, re-implemented here (see
``reference_round``): github.com/RuiyangJu/ThreshNet, ``C10-demo/main.py`` (file as of
commit 0706697, 2022-08-07; unchanged at the newest snapshot read, 0eeef87), whose README
gives the same defaults. Per item, a torchvision ``CIFAR10``-style dataset turns the uint8
image into a PIL image and applies RandomHorizontalFlip + ToTensor (no crop, no
normalisation); a ``DataLoader(batch_size=100, shuffle=True)`` with no other argument,
so batches are made in the main process (no worker processes, no pinned memory); fp32,
NCHW; Adam (lr 1e-3); ``nn.CrossEntropyLoss``; ``cudnn.benchmark = True`` on CUDA (their
``load_model`` sets it; nothing on the CPU). Each step: ``.to(device)``, zero_grad,
forward, loss, backward, step, then ``loss.item()`` (kept in two lists and a running sum),
``torch.max(output, 1)`` with predictions and targets copied to NumPy and compared, and a
progress-bar line (loss, accuracy, step and total time) written and flushed.

Ours: the proxy loop of ``threshnet.training.loops`` (data held on the device as uint8,
crop + flip + normalise per batch as tensors; channels_last, and bf16 autocast on CUDA),
at the proxy's default settings.

Same model (threshnet79), same images, same device, same process. The arms alternate
in rounds (reference, ours, reference, ours, ...); each builds a fresh model, runs
warm-up steps, then is timed over the same number of training images. cudnn flags are
reset to the process defaults before each arm (ours sets ``cudnn.benchmark`` globally)
and restored after it. Prints images/s of each arm per round, the ratio ours /
reference as min / median / max over the rounds, and one JSON line with everything.

    python bench/proxy_throughput.py --data-dir /tmp/cifar10-jpeg --images 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from threshnet.latency import device_name
from threshnet.model import build_model
from threshnet.presets import get_preset
from threshnet.training.batches import DeviceBatches
from threshnet.training.data import ImageSet, load_split, stratified_subset
from threshnet.training.loops import (
    TrainSettings,
    batch_settings,
    make_optimizer,
    make_scheduler,
    prepare_model,
    train_epoch,
)

MODEL = "threshnet79"
REFERENCE_SOURCE = {
    "repository": "https://github.com/RuiyangJu/ThreshNet",
    "path": "C10-demo/main.py",
    "commit": "0706697",
}
REFERENCE_BATCH = 100  # main.py --trainBatchSize default
REFERENCE_LR = 1e-3  # main.py --lr default; MultiStepLR(75, 150) only changes it per epoch
BAR_LENGTH = 80  # the width of the authors' progress bar


@dataclass(frozen=True)
class Timed:
    """One arm of one round: images trained on in the timed part, and its seconds."""

    images: int
    seconds: float
    cudnn: dict[str, bool]

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


class PilDataset(Dataset):
    """torchvision.datasets.CIFAR10's item path: uint8 HWC -> PIL -> transform, int label."""

    def __init__(self, data: ImageSet, transform: transforms.Compose):
        self.images = data.images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = data.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cudnn_flags() -> dict[str, bool]:
    cudnn = torch.backends.cudnn
    return {
        "benchmark": cudnn.benchmark,
        "deterministic": cudnn.deterministic,
        "allow_tf32": cudnn.allow_tf32,
    }


@contextlib.contextmanager
def cudnn_set_to(flags: dict[str, bool]) -> Iterator[None]:
    """Run with the cudnn ``flags``; put back the ones found on entry afterwards."""
    saved = cudnn_flags()
    try:
        for name, value in flags.items():
            setattr(torch.backends.cudnn, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(torch.backends.cudnn, name, value)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)}m{seconds:.0f}s" if minutes else f"{seconds * 1000:.0f}ms"


class ProgressBar:
    """The per-step progress line of the authors' training loop (their ``misc.py``):
    step count, a bar, the step's and the epoch's time, and their message."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.begin = self.last = time.time()

    def update(self, current: int, total: int, message: str) -> None:
        now = time.time()
        if current == 0:
            self.begin = now
        done = int(BAR_LENGTH * (current + 1) / total)
        bar = "=" * done + ">" + "." * (BAR_LENGTH - done - 1)
        step, self.last = now - self.last, now
        end = "\r" if current < total - 1 else "\n"
        self.stream.write(f" {current + 1}/{total} [{bar}]")
        self.stream.write(f"  Step: {_clock(step)} | Tot: {_clock(now - self.begin)} | {message}")
        self.stream.write(end)
        self.stream.flush()


def reference_round(
    data: ImageSet,
    device: torch.device,
    *,
    images: int,
    warmup_steps: int,
    seed: int,
    progress: TextIO,
) -> Timed:
    """The authors' training loop (``Solver.load_data``, ``load_model`` and ``train`` of
    github.com/RuiyangJu/ThreshNet C10-demo/main.py) for ``warmup_steps`` steps, then
    timed over ``images`` images. Their model is threshnet79 as here; their MultiStepLR
    steps once per epoch, so it leaves lr at 1e-3 for these steps and is left out."""
    torch.manual_seed(seed)
    train_transform = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    train_loader = DataLoader(
        dataset=PilDataset(data, train_transform), batch_size=REFERENCE_BATCH, shuffle=True
    )
    # load_model: cudnn.benchmark on CUDA, then the model, Adam and the criterion.
    authors_flags = {"benchmark": True} if device.type == "cuda" else {}
    with cudnn_set_to(authors_flags):
        model = build_model(get_preset(MODEL)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=REFERENCE_LR)
        criterion = nn.CrossEntropyLoss().to(device)
        bar = ProgressBar(progress)
        model.train()
        train_loss, train_correct, total = 0.0, 0.0, 0.0
        all_train_iter_loss: list[float] = []
        train_loss_values: list[float] = []
        step, seen, start, flags = 0, 0, 0.0, cudnn_flags()
        while seen < images:  # a new epoch if the data runs out (only tiny data does)
            batches = iter(train_loader)
            for batch_num in range(len(train_loader)):
                if step == warmup_steps:
                    _sync(device)
                    flags = cudnn_flags()
                    start = time.perf_counter()  # before the batch is made
                data_batch, target = next(batches)
                data_batch, target = data_batch.to(device), target.to(device)
                optimizer.zero_grad()
                output = model(data_batch)
                loss = criterion(output, target)
                loss.backward()
                optimizer.step()
                iter_loss = loss.item()
                all_train_iter_loss.append(iter_loss)
                train_loss += iter_loss
                train_loss_values.append(train_loss / (batch_num + 1))
                prediction = torch.max(output, 1)
                total += target.size(0)
                train_correct += np.sum(prediction[1].cpu().numpy() == target.cpu().numpy())
                bar.update(
                    batch_num,
                    len(train_loader),
                    "Loss: %.4f | Acc: %.3f%% (%d/%d)"  # noqa: UP031 (their format)
                    % (
                        train_loss / (batch_num + 1),
                        100.0 * train_correct / total,
                        train_correct,
                        total,
                    ),
                )
                if step >= warmup_steps:
                    seen += target.size(0)
                    if seen >= images:
                        break
                step += 1
        _sync(device)
        seconds = time.perf_counter() - start
    return Timed(images=seen, seconds=seconds, cudnn=flags)


def ours_round(
    data: ImageSet,
    device: torch.device,
    *,
    images: int,
    warmup_steps: int,
    seed: int,
    settings: TrainSettings,
    defaults: dict[str, bool],
) -> Timed:
    """The proxy's loop: warm-up steps over every batch shape the timed pass will see
    (cudnn autotuning), then one timed pass over ``images`` images."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    size = settings.batch_size
    warm_images = min(warmup_steps * size + images % size, len(data))
    warm_order = order.roll(-images)  # the images after the timed ones (if there are any)
    with cudnn_set_to(defaults):
        torch.manual_seed(seed)
        model = prepare_model(build_model(get_preset(MODEL)), device, settings)
        optimizer = make_optimizer(model, settings)
        train = batch_settings(settings, device, train=True)
        warm = DeviceBatches(
            data.subset(warm_order[:warm_images]),
            train,
            device=device,
            shuffle=True,
            seed=seed,
        )
        timed = DeviceBatches(data.subset(order[:images]), train, device=device, shuffle=True)
        scheduler = make_scheduler(optimizer, len(timed), settings)
        if warm_images:
            train_epoch(model, warm, optimizer, scheduler, settings, epoch=0)
        _sync(device)
        flags = cudnn_flags()
        start = time.perf_counter()
        stats = train_epoch(model, timed, optimizer, scheduler, settings, epoch=1)
        _sync(device)
        seconds = time.perf_counter() - start
    return Timed(images=stats.images, seconds=seconds, cudnn=flags)


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="ImageFolder root (train/)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument(
        "--images",
        type=int,
        default=2000,
        help=f"timed training images per arm and round (from {REFERENCE_BATCH} on, rounded "
        f"down to a multiple of {REFERENCE_BATCH}: the reference's batch)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="reference/ours pairs")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps per arm")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (all)")
    parser.add_argument("--batch-size", type=int, default=TrainSettings().batch_size)
    args = parser.parse_args()
    if args.rounds < 1 or args.warmup_steps < 0:
        parser.error("--rounds must be >= 1 and --warmup-steps >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    defaults = cudnn_flags()
    settings = TrainSettings(batch_size=args.batch_size)
    full = load_split("train", data_dir=args.data_dir, cache_dir=args.cache_dir)
    # Spare images beyond the timed ones: ours' warm-up set, and the reference's warm-up
    # steps plus a batch of slack so its epoch does not end (in a partial batch) while
    # timed. Data too small for that (a dry run) is used whole: the reference's timed
    # steps then cross into a new epoch, and the arms' image counts may differ.
    spare = max(
        (args.warmup_steps + 1) * settings.batch_size, (args.warmup_steps + 2) * REFERENCE_BATCH
    )
    images = min(args.images, len(full))
    if len(full) - spare >= REFERENCE_BATCH:
        images = min(images, len(full) - spare)
    if images >= REFERENCE_BATCH:
        images -= images % REFERENCE_BATCH
    wanted = images + spare + len(full.classes)  # per-class rounding may lose a few
    data = full.subset(stratified_subset(full.labels, min(1.0, wanted / len(full)), seed=0))
    images = min(images, len(data))

    print(
        f"{MODEL} on {device} ({device_name(device)}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {images} timed images per arm after "
        f"{args.warmup_steps} warm-up steps, {args.rounds} rounds",
        flush=True,
    )
    reference: list[Timed] = []
    ours: list[Timed] = []
    with open(os.devnull, "w", encoding="utf-8") as progress:
        for round_index in range(args.rounds):
            with cudnn_set_to(defaults):
                reference.append(
                    reference_round(
                        data,
                        device,
                        images=images,
                        warmup_steps=args.warmup_steps,
                        seed=round_index,
                        progress=progress,
                    )
                )
            ours.append(
                ours_round(
                    data,
                    device,
                    images=images,
                    warmup_steps=args.warmup_steps,
                    seed=round_index,
                    settings=settings,
                    defaults=defaults,
                )
            )
            ref_rate, our_rate = reference[-1].images_per_second, ours[-1].images_per_second
            print(
                f"round {round_index + 1}: reference {ref_rate:9.1f} images/s "
                f"({reference[-1].images} in {reference[-1].seconds:.2f} s), ours "
                f"{our_rate:9.1f} images/s ({ours[-1].images} in {ours[-1].seconds:.2f} s), "
                f"ratio {our_rate / ref_rate:.2f}x",
                flush=True,
            )
    if cudnn_flags() != defaults:
        raise RuntimeError(f"cudnn flags leaked: {cudnn_flags()} != {defaults}")

    ref_rates = [timed.images_per_second for timed in reference]
    our_rates = [timed.images_per_second for timed in ours]
    ratios = [mine / theirs for mine, theirs in zip(our_rates, ref_rates, strict=True)]
    for name, rates in (("reference", ref_rates), ("ours", our_rates)):
        spread = _spread(rates)
        print(
            f"{name:9s} images/s  min {spread['min']:9.1f}  median {spread['median']:9.1f}  "
            f"max {spread['max']:9.1f}"
        )
    spread = _spread(ratios)
    print(
        f"ratio ours/reference  min {spread['min']:.2f}x  median {spread['median']:.2f}x  "
        f"max {spread['max']:.2f}x"
    )
    result = {
        "benchmark": "proxy_throughput",
        "model": MODEL,
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "images": images,
        "warmup_steps": args.warmup_steps,
        "rounds": args.rounds,
        "order": "reference then ours, each round",
        "reference": {
            "source": REFERENCE_SOURCE,
            "batch": REFERENCE_BATCH,
            "workers": 0,
            "pin_memory": False,
            "transforms": ["RandomHorizontalFlip", "ToTensor"],
            "optimizer": f"adam lr={REFERENCE_LR}",
            "precision": "fp32, NCHW",
            "per_step": "loss.item(), accuracy via .cpu().numpy(), progress line (to devnull)",
            "cudnn": reference[0].cudnn,
            "images_per_s": [round(rate, 1) for rate in ref_rates],
            "seconds": [round(timed.seconds, 3) for timed in reference],
            "timed_images": [timed.images for timed in reference],
        },
        "ours": {
            "settings": settings.to_dict(),
            "cudnn": ours[0].cudnn,
            "images_per_s": [round(rate, 1) for rate in our_rates],
            "seconds": [round(timed.seconds, 3) for timed in ours],
            "timed_images": [timed.images for timed in ours],
        },
        "cudnn_defaults": defaults,
        "ratio": spread,
        "ratio_per_round": [round(ratio, 3) for ratio in ratios],
        "reference_images_per_s": _spread(ref_rates),
        "ours_images_per_s": _spread(our_rates),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
