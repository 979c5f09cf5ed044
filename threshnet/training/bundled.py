"""The CIFAR-10 subset that ships with the package, so that a first run needs no download.

``python -m search.run --smoke`` trains on it when no ``--data-dir`` is given. It holds
the first 375 training and 100 test images of each class, in the official CIFAR-10 order,
as JPEGs in ImageFolder layout (``cifar10-subset/train/<class>/NNNN.jpg``), taken without
change from the offline CIFAR-10 JPEG archive (see ``../shared/data/README.md``: JPEG
quality 75, so pixels are close to, not equal to, the originals). Rebuild it with

    python -m threshnet.training.bundled ../shared/data/cifar10-jpeg.tar.xz
"""

from __future__ import annotations

import io
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

from threshnet.fileio import atomic_write

SUBSET_ARCHIVE = Path(__file__).with_name("cifar10-subset.tar.xz")
TOP = "cifar10-subset"
PER_CLASS = {"train": 375, "test": 100}


def bundled_cifar10() -> Path:
    """The packaged subset's archive (extracted into the data cache when first used)."""
    if not SUBSET_ARCHIVE.is_file():
        raise FileNotFoundError(
            f"the bundled CIFAR-10 subset {SUBSET_ARCHIVE} is missing from this installation; "
            "reinstall threshnet-search or pass --data-dir"
        )
    return SUBSET_ARCHIVE


def _wanted(name: str) -> str | None:
    """The subset's path for archive member ``name`` (``<top>/<split>/<class>/NNNN.jpg``),
    or None when the subset leaves it out."""
    parts = name.split("/")
    if len(parts) != 4 or parts[1] not in PER_CLASS or not parts[3].endswith(".jpg"):
        return None
    stem = parts[3].removesuffix(".jpg")
    if not stem.isdigit() or int(stem) >= PER_CLASS[parts[1]]:
        return None
    return "/".join([TOP, *parts[1:]])


def build_subset(source: Path, target: Path = SUBSET_ARCHIVE) -> int:
    """Write the subset of the full archive ``source`` to ``target``, byte-for-byte the
    same for the same source (sorted members, fixed metadata); the number of images."""
    images: dict[str, bytes] = {}
    with tarfile.open(source) as full:
        for member in full:
            path = _wanted(member.name) if member.isfile() else None
            if path is not None:
                handle = full.extractfile(member)
                assert handle is not None
                images[path] = handle.read()

    def write(temp: Path) -> None:
        with tarfile.open(temp, "w:xz", format=tarfile.PAX_FORMAT) as subset:
            for path in sorted(images):
                info = tarfile.TarInfo(path)
                info.size, info.mode, info.mtime = len(images[path]), 0o644, 0
                subset.addfile(info, io.BytesIO(images[path]))

    atomic_write(target, write)
    return len(images)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m threshnet.training.bundled CIFAR10_JPEG_ARCHIVE", file=sys.stderr)
        return 2
    count = build_subset(Path(args[0]))
    print(f"{count} images -> {SUBSET_ARCHIVE} ({SUBSET_ARCHIVE.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
