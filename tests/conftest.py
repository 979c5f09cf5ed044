"""Shared fixtures: deterministic torch, and tiny ImageFolder datasets written to disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

CLASSES = ("cat", "dog", "ship")


def write_image_folder(
    root: Path,
    *,
    per_class: int,
    classes: tuple[str, ...] = CLASSES,
    size: int = 32,
    splits: tuple[str, ...] = ("train", "test"),
    seed: int = 0,
) -> Path:
    """Write PNGs in ImageFolder layout; each class has its own dominant colour channel."""
    generator = torch.Generator().manual_seed(seed)
    for split in splits:
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                image = torch.randint(
                    0, 90, (3, size, size), generator=generator, dtype=torch.uint8
                )
                image[label % 3] += 150
                pixels = image.permute(1, 2, 0).numpy()
                Image.fromarray(pixels).save(folder / f"{index:04d}.png")
    return root


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "data", per_class=12)
