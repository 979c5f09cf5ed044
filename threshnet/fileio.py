"""Atomic file writes (a temporary file beside the target, then a rename), and removal of
the temporaries a killed process left behind."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(temp_path)``, flush it to disk and rename it to ``path``.

    A crash at any point leaves either the old file or the complete new one, never a
    half-written file under ``path``.
    """
    path = Path(path)
    descriptor, temp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    os.close(descriptor)
    temp = Path(temp_name)
    os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


TEMPORARY_PATTERNS = (".*.tmp", ".extract-*")  # atomic_write's files, unfinished extractions
STALE_AFTER_SECONDS = 3600.0


def remove_stale_temporaries(
    folder: str | os.PathLike[str], *, older_than: float = STALE_AFTER_SECONDS
) -> list[Path]:
    """Remove temporaries a killed process left in ``folder``; the removed paths.

    Only what matches TEMPORARY_PATTERNS and was not modified for ``older_than`` seconds
    goes, so a write or an extraction in progress elsewhere is left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    deadline = time.time() - older_than
    removed = []
    for pattern in TEMPORARY_PATTERNS:
        for path in folder.glob(pattern):
            try:
                if path.lstat().st_mtime > deadline:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                continue  # gone already, or not ours to remove
            removed.append(path)
    return removed
