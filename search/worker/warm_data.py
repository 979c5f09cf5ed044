"""The proxy data a warm worker keeps between trials.

Ray Tune reuses each trial's worker process for the next trial (``reuse_actors``), so
what a worker loads stays loaded: the first trial on a worker reads the decoded cache,
verifies it, carves the proxy-training and validation splits, moves both to the
worker's device and computes the normalisation; the trials after it on that worker
start from there. One data set is held per worker (a new study setting replaces it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from search.setup.proxy_data import split_training_data
from search.setup.settings import StudySettings
from threshnet.training.batches import channel_statistics
from threshnet.training.data import CacheEntry, ImageSet, load_split


@dataclass(frozen=True)
class ProxyData:
    """Proxy-training and validation images on one device, with the training images'
    per-channel (mean, std)."""

    train: ImageSet
    val: ImageSet
    normalization: tuple[torch.Tensor, torch.Tensor]


_held: dict[tuple[object, ...], ProxyData] = {}


def _key(
    settings: StudySettings, cache_dir: str | None, entry: CacheEntry | None, device: torch.device
) -> tuple[object, ...]:
    return (
        settings.data_dir,
        cache_dir,
        entry,
        settings.val_size,
        settings.split_seed,
        settings.train_fraction,
        settings.max_train_images,
        settings.max_val_images,
        str(device),
    )


def proxy_data(
    settings: StudySettings,
    *,
    cache_dir: str | None,
    entry: CacheEntry | None,
    device: torch.device,
) -> ProxyData:
    """The study's proxy data on ``device``: loaded once per worker, then held."""
    key = _key(settings, cache_dir, entry, device)
    held = _held.get(key)
    if held is not None:
        return held
    _held.clear()  # another study's data: free it before loading this one
    data = load_split("train", data_dir=settings.data_dir, cache_dir=cache_dir, entry=entry)
    train, val = split_training_data(data, settings)
    train, val = train.to(device), val.to(device)
    held = ProxyData(train=train, val=val, normalization=channel_statistics(train.images))
    _held[key] = held
    return held
