"""Image data decoded once into uint8 tensors and cached; stratified train/val splits.

Sources: torchvision's CIFAR-10 (downloaded into the cache directory where the internet
is reachable) or a directory in ImageFolder layout (``train/<class>/*``,
``test/<class>/*``), such as the unpacked ``cifar10-jpeg.tar.xz``. The cache file is
keyed by the source (paths, sizes and modification times of every image) and carries a
checksum of its pixels; a stale, truncated or corrupt cache is detected and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from threshnet.fileio import atomic_write, remove_stale_temporaries

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
SPLITS = ("train", "test")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")
_ARCHIVE_ERRORS = (lzma.LZMAError, zlib.error)  # a damaged .xz / .gz stream


class DataError(ValueError):
    """Missing, malformed or unreachable data; the message says what was expected where."""


@dataclass(frozen=True)
class ImageSet:
    """Images (N, 3, H, W) uint8 and labels (N,) int64 of one split."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.classes)

    def to(self, device: torch.device) -> ImageSet:
        """The same images and labels on ``device``."""
        return ImageSet(self.images.to(device), self.labels.to(device), self.classes)


def default_cache_dir() -> Path:
    """``$THRESHNET_CACHE`` or ``~/.cache/threshnet-search``."""
    return Path(os.environ.get("THRESHNET_CACHE", Path.home() / ".cache" / "threshnet-search"))


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def writable_cache_root(cache_dir: str | Path | None) -> Path:
    """The cache directory, created if needed; DataError when it cannot be written."""
    root = _cache_root(cache_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as error:
        raise DataError(
            f"cannot write the cache directory {root}: {error.strerror or error}; "
            "pass --cache-dir with a writable directory"
        ) from None
    for folder in (root, root / "extracted"):
        remove_stale_temporaries(folder)
    return root


def _checksum(images: torch.Tensor, labels: torch.Tensor) -> int:
    checksum = zlib.crc32(images.contiguous().numpy().tobytes())
    return zlib.crc32(labels.contiguous().numpy().tobytes(), checksum)


def _read_cache(path: Path, key: str) -> ImageSet | None:
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = blob["images"], blob["labels"]
        valid = (
            blob["format"] == CACHE_FORMAT
            and blob["key"] == key
            and images.dtype == torch.uint8
            and images.dim() == 4
            and labels.shape == (images.shape[0],)
            and blob["checksum"] == _checksum(images, labels)
        )
    except Exception as error:  # any unreadable cache is rebuilt, never trusted
        logger.warning("data cache %s is unreadable (%s); rebuilding it", path, error)
        return None
    if not valid:
        logger.warning("data cache %s is stale or corrupt; rebuilding it", path)
        return None
    return ImageSet(images, labels, tuple(blob["classes"]))


def _write_cache(path: Path, key: str, data: ImageSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": CACHE_FORMAT,
        "key": key,
        "images": data.images,
        "labels": data.labels,
        "classes": list(data.classes),
        "checksum": _checksum(data.images, data.labels),
    }
    atomic_write(path, lambda temp: torch.save(blob, temp))


def _extract(archive: Path, target: Path) -> None:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise DataError(f"archive {archive} has an unsafe path {member!r}")
            bundle.extractall(target)
    else:
        with tarfile.open(archive) as bundle:
            bundle.extractall(target, filter="data")
            # tarfile stops quietly at a member header it cannot read; reading the
            # compressed stream to its end checks its checksum (.xz, .gz, .bz2), so a
            # damaged archive is an error, not a partial data set
            while bundle.fileobj.read(1 << 20):
                pass


def resolve_data_dir(data_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The ImageFolder root for ``data_dir``: the directory itself, or an archive of one
    (.tar, .tar.gz, .tar.xz, .zip) extracted once into the cache directory."""
    path = Path(data_dir)
    if path.is_dir():
        return path
    layout = "a directory in ImageFolder layout (train/<class>/*, test/<class>/*)"
    if not path.exists():
        raise DataError(
            f"data directory {path} does not exist; expected {layout} or an archive of one"
        )
    if not path.name.endswith(ARCHIVE_SUFFIXES):
        raise DataError(
            f"{path} is a file; expected {layout} or a .tar(.gz/.xz)/.zip archive of one"
        )
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    parent = writable_cache_root(cache_dir) / "extracted"
    target = parent / f"{path.name.split('.')[0]}-{digest.hexdigest()[:16]}"
    if not (target / ".complete").exists():
        parent.mkdir(parents=True, exist_ok=True)
        # Processes that start at once (trainings side by side, Ray workers) extract it
        # once: the others wait, then find it complete, and nobody replaces a copy in use.
        with FileLock(str(parent / f"{target.name}.lock")):
            if not (target / ".complete").exists():
                _extract_into(path, target)
    entries = [entry for entry in target.iterdir() if entry.is_dir()]
    if not (target / "train").is_dir() and len(entries) == 1:
        return entries[0]
    return target


def _extract_into(archive: Path, target: Path) -> None:
    """Extract ``archive`` beside ``target``, then move it there whole (``.complete`` marks
    a finished copy)."""
    temp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        _extract(archive, temp)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, *_ARCHIVE_ERRORS) as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise DataError(f"cannot extract {archive}: {error}") from None
    (temp / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)  # an unfinished copy from a killed process
    os.replace(temp, target)


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())


def check_same_classes(data_dir: str | Path | None, cache_dir: str | Path | None = None) -> None:
    """Raise DataError when the splits of an ImageFolder have different class folders.

    Labels are class indices in sorted order, so a test split with a renamed, missing or
    extra class would be scored against the wrong labels. Only folder names are read.
    """
    if data_dir is None:  # torchvision's CIFAR-10: one class list
        return
    root = resolve_data_dir(data_dir, cache_dir)
    if not (root / "train").is_dir():
        return  # reading the training split says what is missing
    train = _class_folders(root / "train")
    for split in SPLITS[1:]:
        if not (root / split).is_dir():
            continue
        classes = _class_folders(root / split)
        if classes != train:
            missing = sorted(set(train) - set(classes))
            extra = sorted(set(classes) - set(train))
            raise DataError(
                f"{root / split} has other class folders than {root / 'train'} "
                f"(missing: {', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'}"
                "); every split needs the same class folders"
            )


def _scan_image_folder(root: Path, split: str) -> tuple[list[str], list[tuple[Path, int]]]:
    split_dir = root / split
    expected = f"expected {split_dir}/<class>/<image> (ImageFolder layout: train/ and test/)"
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist; {expected}")
    if not split_dir.is_dir():
        raise DataError(f"no '{split}' folder in {root}; {expected}")
    classes = _class_folders(split_dir)
    if len(classes) < 2:
        raise DataError(
            f"{split_dir} has {len(classes)} class folder(s), need 2 or more; {expected}"
        )
    files = []
    for label, name in enumerate(classes):
        images = sorted(
            path
            for path in (split_dir / name).iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise DataError(f"class folder {split_dir / name} has no images; {expected}")
        files += [(path, label) for path in images]
    return classes, files


def _folder_key(root: Path, split: str, files: list[tuple[Path, int]]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{root.resolve()}|{split}".encode())
    for path, label in files:
        stat = path.stat()
        digest.update(b"|" + os.fsencode(path.relative_to(root)))  # names need not be UTF-8
        digest.update(f"|{label}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _decode_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """RGB pixels (H, W, 3) of one image; DataError when it is unreadable or, reading only
    its header, not ``size`` (width, height) pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header; pixels on convert
            found = image.size
            if size is None or found == size:
                return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot decode image {path}: {error}") from None
    raise DataError(
        f"image {path} is {found[0]}x{found[1]} but earlier images are {size[0]}x{size[1]}; "
        "all images must share one size"
    )


DECODE_PROGRESS_SECONDS = 5.0  # a progress line at most this often while decoding


def _decode_folder(files: list[tuple[Path, int]], classes: list[str]) -> ImageSet:
    images: list[np.ndarray] = []
    started = last_report = time.monotonic()
    for path, _ in files:
        size = (images[0].shape[1], images[0].shape[0]) if images else None
        images.append(_decode_image(path, size))
        now = time.monotonic()
        if now - last_report >= DECODE_PROGRESS_SECONDS:
            last_report = now
            done = len(images)
            left = (now - started) / done * (len(files) - done)
            logger.info(
                "decoding %s: %d of %d images, about %.0f s left (once: then cached)",
                path.parent.parent.name,
                done,
                len(files),
                left,
            )
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageSet(stacked, labels, tuple(classes))


def _load_torchvision_cifar10(split: str, cache_dir: Path) -> ImageSet:
    from torchvision.datasets import CIFAR10

    try:
        dataset = CIFAR10(
            root=str(cache_dir / "torchvision"), train=split == "train", download=True
        )
    except Exception as error:
        raise DataError(
            f"could not get CIFAR-10 through torchvision into {cache_dir / 'torchvision'} "
            f"({error}); without internet access pass --data-dir with an ImageFolder copy"
        ) from None
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    return ImageSet(images, labels, tuple(dataset.classes))


@dataclass(frozen=True)
class CacheEntry:
    """Where a split's cache lives and the key its contents must carry."""

    path: Path
    key: str


def _locate(
    split: str, data_dir: str | Path | None, cache_dir: str | Path | None
) -> tuple[CacheEntry, list[str], list[tuple[Path, int]]]:
    """Cache entry, class names and image files of a split (no files for torchvision)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cache_root = writable_cache_root(cache_dir)
    if data_dir is None:
        entry = CacheEntry(
            cache_root / f"cifar10-torchvision-{split}.pt",
            f"torchvision-cifar10|{split}|{CACHE_FORMAT}",
        )
        return entry, [], []
    root = resolve_data_dir(data_dir, cache_root)
    classes, files = _scan_image_folder(root, split)
    key = _folder_key(root, split, files)
    return CacheEntry(cache_root / f"imagefolder-{split}-{key[:20]}.pt", key), classes, files


def locate_cache(
    split: str, *, data_dir: str | Path | None, cache_dir: str | Path | None = None
) -> CacheEntry:
    """The cache entry of a split (for a folder this stats every image once)."""
    return _locate(split, data_dir, cache_dir)[0]


def load_split(
    split: str,
    *,
    data_dir: str | Path | None,
    cache_dir: str | Path | None = None,
    entry: CacheEntry | None = None,
) -> ImageSet:
    """Load one split as uint8 tensors, from the cache when it is valid.

    ``data_dir=None`` uses torchvision's CIFAR-10. ``entry`` (from :func:`locate_cache`
    on another process) skips re-scanning the source when its cache file is valid.
    Raises DataError with what was expected.
    """
    if entry is not None:
        cached = _read_cache(entry.path, entry.key)
        if cached is not None:
            return cached
    entry, classes, files = _locate(split, data_dir, cache_dir)
    cached = _read_cache(entry.path, entry.key)
    if cached is None:
        if data_dir is None:
            cached = _load_torchvision_cifar10(split, _cache_root(cache_dir))
        else:
            cached = _decode_folder(files, classes)
        _write_cache(entry.path, entry.key, cached)
    return cached


def _resolve_count(size: int | float, total: int, what: str) -> int:
    if isinstance(size, float):
        if not 0.0 < size < 1.0:
            raise DataError(f"{what} as a fraction must be in (0, 1), got {size}")
        return max(1, round(size * total))
    return size


def stratified_split(
    labels: torch.Tensor, val_size: int | float, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-stratified (train, val) index tensors; ``val_size`` is a count or a fraction.

    Each class contributes in proportion to its size (largest remainders), at least one
    image to each side. The same labels, size and seed always give the same split.
    """
    total = int(labels.numel())
    classes = torch.unique(labels)
    count = _resolve_count(val_size, total, "validation size")
    if not len(classes) <= count <= total - len(classes):
        raise DataError(
            f"validation size {count} does not fit {total} training images in {len(classes)} "
            f"classes: need between {len(classes)} and {total - len(classes)}; pass --val-size "
            "as a smaller count or a fraction such as 0.1"
        )
    generator = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in classes.tolist()]
    exact = [len(indices) * count / total for indices in per_class]
    quotas = [int(value) for value in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - quotas[i], reverse=True)
    for index in by_remainder[: count - sum(quotas)]:
        quotas[index] += 1
    train, val = [], []
    for indices, quota in zip(per_class, quotas, strict=True):
        quota = min(max(quota, 1), len(indices) - 1)
        if quota < 1:
            raise DataError("every class needs at least two training images for a validation split")
        shuffled = indices[torch.randperm(len(indices), generator=generator)]
        val.append(shuffled[:quota])
        train.append(shuffled[quota:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def stratified_subset(labels: torch.Tensor, fraction: float, *, seed: int) -> torch.Tensor:
    """Indices of a class-stratified ``fraction`` of ``labels`` (all of them at 1.0)."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"train fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return torch.arange(labels.numel())
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for c in torch.unique(labels).tolist():
        indices = torch.nonzero(labels == c).flatten()
        keep = max(1, round(len(indices) * fraction))
        kept.append(indices[torch.randperm(len(indices), generator=generator)[:keep]])
    return torch.cat(kept).sort().values
