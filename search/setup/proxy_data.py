"""The search's data: the training split decoded once, carved into proxy-training and
validation sets. The test split is never loaded during a search."""

from __future__ import annotations

import logging

import torch

from search.setup.settings import StudySettings
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

# Fewer optimiser steps than this in a whole proxy training and the one-cycle schedule's
# warm-up is a handful of steps: accuracies then measure the initialisation more than the
# network (the smoke proxy takes 141 steps, the CPU case study's 125).
MIN_PROXY_STEPS = 50


def check_proxy_size(settings: StudySettings, train_images: int, *, refuse: bool = True) -> None:
    """Refuse (or with ``refuse`` False, warn about) a batch larger than the
    proxy-training images (one step an epoch, on a batch the user did not ask for); warn
    in one line when the whole proxy takes fewer than MIN_PROXY_STEPS optimiser steps."""
    batch = settings.train.batch_size
    if batch > train_images and not refuse:
        logger.warning(
            "warning: --batch-size %d is larger than the %d proxy-training images",
            batch,
            train_images,
        )
    elif batch > train_images:
        raise UserError(
            f"--batch-size {batch} is larger than the {train_images} proxy-training images: "
            f"every epoch would be one step on all of them; give --batch-size {train_images} "
            "or less (or more training images)"
        )
    steps = settings.train.epochs * -(-train_images // batch)
    if steps < MIN_PROXY_STEPS:
        logger.warning(
            "warning: the proxy takes only %d optimiser steps (%d epochs x %d batches of %d); "
            "below %d its accuracies say little: lower --batch-size or raise --epochs",
            steps,
            settings.train.epochs,
            -(-train_images // batch),
            batch,
            MIN_PROXY_STEPS,
        )


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


def prepare_data(
    settings: StudySettings, cache_dir: str | None, *, new_study: bool = False
) -> tuple[CacheEntry, int]:
    """Decode and cache the training images once, check the split; (cache entry, classes).

    For a ``new_study``, a batch larger than the proxy-training images is refused; a
    resumed study trained that way already, so there it is only warned about."""
    try:
        check_same_classes(settings.data_dir, cache_dir)
        entry = locate_cache("train", data_dir=settings.data_dir, cache_dir=cache_dir)
        data = load_split("train", data_dir=settings.data_dir, cache_dir=cache_dir, entry=entry)
        train_set, val_set = split_training_data(data, settings)
    except DataError as error:
        raise UserError(str(error)) from None
    check_proxy_size(settings, len(train_set), refuse=new_study)
    logger.info(
        "data: %d proxy-training and %d validation images, %d classes (test split unused)",
        len(train_set),
        len(val_set),
        len(data.classes),
    )
    return entry, len(data.classes)
