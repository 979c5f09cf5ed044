"""Training throughput of the search's proxy loop against the authors' style of loop.

Reference (as the ThreshNet repository trains): a torchvision-style dataset that turns
each uint8 image into a PIL image and applies RandomHorizontalFlip + ToTensor per item,
a DataLoader (batch 100, shuffled, worker processes), fp32, Adam 1e-3.
Ours: the proxy loop of ``threshnet.training.loops`` (data held on the device as uint8, crop +
flip + normalise per batch as tensors; bf16 autocast and channels_last on CUDA), at the
proxy's default batch size.

Same model (threshnet79), same images, same device, same process; both are timed over
the same number of training images after warm-up steps. Prints images/s of each and the
ratio ours / reference, and one JSON line.

    python bench/proxy_throughput.py --data-dir /tmp/cifar10-jpeg --images 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
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


class PilDataset(Dataset):
    """torchvision.datasets.CIFAR10's item path: uint8 HWC -> PIL -> transforms."""

    def __init__(self, data: ImageSet):
        self.images = data.images.permute(0, 2, 3, 1).numpy()
        self.labels = data.labels.tolist()
        self.transform = transforms.Compose(
            [transforms.RandomHorizontalFlip(), transforms.ToTensor()]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_images_per_second(
    data: ImageSet, device: torch.device, *, images: int, warmup_batches: int, workers: int
) -> float:
    model = build_model(get_preset("threshnet79")).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(
        PilDataset(data),
        batch_size=100,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    model.train()
    seen, start = 0, None
    step = 0
    while seen < images:
        for inputs, labels in loader:
            if step == warmup_batches:
                _sync(device)
                start = time.perf_counter()
            inputs = inputs.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            loss = criterion(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= warmup_batches:
                seen += labels.shape[0]
                if seen >= images:
                    break
            step += 1
    _sync(device)
    return seen / (time.perf_counter() - start)


def ours_images_per_second(
    data: ImageSet, device: torch.device, *, images: int, settings: TrainSettings
) -> float:
    model = prepare_model(build_model(get_preset("threshnet79")), device, settings)
    optimizer = make_optimizer(model, settings)
    warm = DeviceBatches(
        data.subset(torch.arange(min(len(data), 2 * settings.batch_size))),
        batch_settings(settings, device, train=True),
        device=device,
        shuffle=True,
    )
    scheduler = make_scheduler(optimizer, len(warm), settings)
    train_epoch(model, warm, optimizer, scheduler, settings, epoch=0)  # warm-up (cudnn)
    timed = DeviceBatches(
        data.subset(torch.arange(images)),
        batch_settings(settings, device, train=True),
        device=device,
        shuffle=True,
    )
    _sync(device)
    start = time.perf_counter()
    stats = train_epoch(model, timed, optimizer, scheduler, settings, epoch=1)
    _sync(device)
    return stats.images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="ImageFolder root (train/)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--images", type=int, default=2000, help="timed training images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (all)")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=TrainSettings().batch_size)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_split("train", data_dir=args.data_dir, cache_dir=args.cache_dir)
    fraction = min(1.0, (args.images + 400) / len(data))
    data = data.subset(stratified_subset(data.labels, fraction, seed=0))
    images = min(args.images, len(data))
    settings = TrainSettings(batch_size=args.batch_size)
    ours = ours_images_per_second(data, device, images=images, settings=settings)
    reference = reference_images_per_second(
        data, device, images=images, warmup_batches=3, workers=args.workers
    )
    result = {
        "benchmark": "proxy_throughput",
        "model": "threshnet79",
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "images": images,
        "ours_images_per_s": round(ours, 1),
        "ours_batch": settings.batch_size,
        "reference_images_per_s": round(reference, 1),
        "reference_batch": 100,
        "reference_workers": args.workers,
        "ratio": round(ours / reference, 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    print(f"ours      {ours:9.1f} images/s (batch {settings.batch_size}, tensors on {device})")
    print(
        f"reference {reference:9.1f} images/s (batch 100, PIL per item, DataLoader x{args.workers})"
    )
    print(f"ratio     {ours / reference:9.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
