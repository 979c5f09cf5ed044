"""The CIFAR-10 subset bundled with the package (threshnet.training.bundled)."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from threshnet.training.bundled import PER_CLASS, SUBSET_ARCHIVE, TOP, build_subset

SHARED_ARCHIVE = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg.tar.xz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
CIFAR10_CLASSES += ("dog", "frog", "horse", "ship", "truck")


def test_the_bundled_subset_is_small_and_class_balanced() -> None:
    assert SUBSET_ARCHIVE.stat().st_size <= 5_000_000
    with tarfile.open(SUBSET_ARCHIVE) as subset:
        names = [member.name for member in subset if member.isfile()]
    per_folder = Counter(name.rsplit("/", 1)[0] for name in names)
    expected = {
        f"{TOP}/{split}/{name}": count
        for split, count in PER_CLASS.items()
        for name in CIFAR10_CLASSES
    }
    assert per_folder == expected
    # --smoke's 3,000 proxy-training images are what is left after its 20 % validation
    assert PER_CLASS["train"] * len(CIFAR10_CLASSES) * 0.8 == 3000


def _fake_full_archive(root: Path) -> Path:
    """A stand-in of the full archive's layout with a few numbered JPEGs per class."""
    for split, numbers in {"train": (0, 374, 375, 4999), "test": (0, 99, 100)}.items():
        for name in ("cat", "dog"):
            folder = root / "cifar10-jpeg" / split / name
            folder.mkdir(parents=True)
            for number in numbers:
                Image.new("RGB", (32, 32), (number % 256, 0, 0)).save(folder / f"{number:04d}.jpg")
    archive = root / "full.tar.xz"
    with tarfile.open(archive, "w:xz") as bundle:
        bundle.add(root / "cifar10-jpeg", arcname="cifar10-jpeg")
    return archive


def test_the_subset_keeps_the_first_images_of_each_class_the_same_way_every_time(
    tmp_path: Path,
) -> None:
    source = _fake_full_archive(tmp_path / "full")
    first, second = tmp_path / "a.tar.xz", tmp_path / "b.tar.xz"
    assert build_subset(source, first) == 2 * (2 + 2)
    build_subset(source, second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as subset:
        names = sorted(member.name for member in subset)
        kept = subset.extractfile(f"{TOP}/train/cat/0374.jpg")
        assert kept is not None and Image.open(io.BytesIO(kept.read())).size == (32, 32)
    assert names == sorted(
        f"{TOP}/{split}/{name}/{number:04d}.jpg"
        for split, numbers in {"train": (0, 374), "test": (0, 99)}.items()
        for name in ("cat", "dog")
        for number in numbers
    )


@pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason="the offline CIFAR-10 archive is absent")
def test_the_bundled_subset_is_rebuilt_exactly_from_the_offline_archive(tmp_path: Path) -> None:
    rebuilt = tmp_path / "subset.tar.xz"
    build_subset(SHARED_ARCHIVE, rebuilt)
    assert rebuilt.read_bytes() == SUBSET_ARCHIVE.read_bytes()
