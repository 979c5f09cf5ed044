"""The search's data: the training split decoded once, carved into proxy-training and
validation sets. The test split is never loaded during a search."""

from __future__ import annotations

import logging

import torch

from search.settings import StudySettings
from threshnet.cli import UserError
from threshnet.training.data import (
    CacheEntry,
    DataError,
    ImageSet,
    check_same_classes,
    load_split,
    locate_cache,
    stratified_split,
    stratified_subset,
)

logger = logging.getLogger("search")


def split_training_data(data: ImageSet, settings: StudySettings) -> tuple[ImageSet, ImageSet]:
    """(proxy training subset, validation split) of the training images."""
    train_idx, val_idx = stratified_split(data.labels, settings.val_size, seed=settings.split_seed)
    train = data.subset(train_idx)
    keep = stratified_subset(train.labels, settings.train_fraction, seed=settings.split_seed)
    keep = _capped(keep, train.labels, settings.max_train_images, settings.split_seed)
    val_idx = _capped(val_idx, data.labels, settings.max_val_images, settings.split_seed)
    return train.subset(keep), data.subset(val_idx)


def _capped(
    indices: torch.Tensor, labels: torch.Tensor, limit: int | None, seed: int
) -> torch.Tensor:
    """A class-stratified subset of ``indices`` of at most about ``limit`` items."""
    if limit is None or len(indices) <= limit:
        return indices
    return indices[stratified_subset(labels[indices], limit / len(indices), seed=seed)]


def prepare_data(settings: StudySettings, cache_dir: str | None) -> tuple[CacheEntry, int]:
    """Decode and cache the training images once, check the split; (cache entry, classes)."""
    try:
        check_same_classes(settings.data_dir, cache_dir)
        entry = locate_cache("train", data_dir=settings.data_dir, cache_dir=cache_dir)
        data = load_split("train", data_dir=settings.data_dir, cache_dir=cache_dir, entry=entry)
        train_set, val_set = split_training_data(data, settings)
    except DataError as error:
        raise UserError(str(error)) from None
    logger.info(
        "data: %d proxy-training and %d validation images, %d classes (test split unused)",
        len(train_set),
        len(val_set),
        len(data.classes),
    )
    return entry, len(data.classes)
