"""The study's journal file with a snapshot beside it, so that opening a large study does
not replay every operation.

Optuna rebuilds a journal storage by replaying every logged operation: 7 s for a study
of 10,000 trials (about 260,000 operations) on a 2-core machine, paid by each resume and
each report. Optuna's journal storage can start from a snapshot of its replayed state
when its backend offers one (``BaseJournalSnapshot``: Optuna pickles the state every 100
trials and hands it over; its Redis backend keeps it). This backend keeps it in a file
beside the journal and serves it only when it still describes a prefix of the journal:
the snapshot file records the journal's size and checksum when it was taken, its own
checksum and the Optuna version that pickled it, and is ignored (the journal is then
replayed as before) when any of them no longer holds: a journal cut back by a repair or
restored from elsewhere, a half-written or foreign file, another Optuna. A snapshot is
written atomically and at most every ``SAVE_EVERY_S`` seconds per process.

It is a pickle, as Optuna's own snapshots are: open studies you trust (as with a model
checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from pathlib import Path

import optuna

# Optuna's optional base class for journal backends that keep snapshots; it lives in a
# private module of optuna.storages.journal (optuna 4.0-5.1, hence the pin below 5.2 in
# pyproject.toml). JournalStorage calls save_snapshot/load_snapshot on such a backend.
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._base import BaseJournalSnapshot

from threshnet.fileio import atomic_write

SAVE_EVERY_S = 30.0
CHUNK = 1 << 22


def _checksum(path: Path, size: int) -> int:
    """CRC-32 of the first ``size`` bytes of ``path``."""
    crc = 0
    with open(path, "rb") as handle:
        while size > 0:
            block = handle.read(min(CHUNK, size))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            size -= len(block)
    return crc


class SnapshotJournalFileBackend(JournalFileBackend, BaseJournalSnapshot):
    """Optuna's journal file, plus a snapshot file (``<journal>.snapshot``)."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._journal = Path(file_path)
        self.snapshot_path = Path(f"{file_path}.snapshot")
        self._saved_at = -float("inf")

    def save_snapshot(self, snapshot: bytes) -> None:
        """Keep ``snapshot`` (Optuna's pickled state, just synced with the journal) with the
        journal's size and checksum now; the state is of a prefix of what the journal holds."""
        now = time.monotonic()
        if now - self._saved_at < SAVE_EVERY_S:
            return
        self._saved_at = now
        journal = self._journal
        size = journal.stat().st_size
        header = {
            "optuna": optuna.__version__,
            "journal_bytes": size,
            "journal_crc32": _checksum(journal, size),
            "snapshot_bytes": len(snapshot),
            "snapshot_crc32": zlib.crc32(snapshot),
        }

        def write(temp: Path) -> None:
            with open(temp, "wb") as handle:
                handle.write(json.dumps(header).encode() + b"\n")
                handle.write(snapshot)

        with contextlib.suppress(OSError):  # a snapshot only saves time: the journal has all
            atomic_write(self.snapshot_path, write)

    def load_snapshot(self) -> bytes | None:
        """The kept snapshot, or None when there is none or it no longer fits the journal."""
        try:
            with open(self.snapshot_path, "rb") as handle:
                header = json.loads(handle.readline())
                snapshot = handle.read()
            fits = (
                header["optuna"] == optuna.__version__
                and len(snapshot) == header["snapshot_bytes"]
                and zlib.crc32(snapshot) == header["snapshot_crc32"]
                and _journal_begins_as_it_did(self._journal, header)
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return snapshot if fits else None

    def __reduce__(self) -> tuple[type, tuple[str]]:  # Ray and Tune pickle the storage
        return (type(self), (str(self._journal),))


def _journal_begins_as_it_did(journal: Path, header: dict) -> bool:
    """Whether ``journal`` still begins with the bytes it held when the snapshot was taken."""
    size = header["journal_bytes"]
    return journal.stat().st_size >= size and _checksum(journal, size) == header["journal_crc32"]


def vouched_bytes(journal: Path) -> int:
    """How many bytes at the start of ``journal`` its snapshot vouches for: whole
    operations that Optuna had read without error when it took the snapshot (the driver,
    the journal's one writer, had just read them all), unchanged since; 0 when there is
    no snapshot, or it no longer fits."""
    try:
        with open(f"{journal}.snapshot", "rb") as handle:
            header = json.loads(handle.readline())
        size = header["journal_bytes"]
        if size <= 0 or not _journal_begins_as_it_did(journal, header):
            return 0
        with open(journal, "rb") as handle:
            handle.seek(size - 1)
            return size if handle.read(1) == b"\n" else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0
