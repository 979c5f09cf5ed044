"""The study's journal file with a snapshot beside it, so that opening a large study does
not replay every operation.

Optuna rebuilds a journal storage by replaying every logged operation: 7 s for a study
of 10,000 trials (about 260,000 operations) on a 2-core machine, paid by each resume and
each report. Optuna's journal storage can start from a snapshot of its replayed state
when its backend offers one (``BaseJournalSnapshot``: Optuna pickles the state every 100
trials and hands it over; its Redis backend keeps it). This backend keeps it in a file
beside the journal and serves it only while it still describes a prefix of the journal.

The snapshot file's header vouches for a prefix of the journal: every line in it a
complete JSON operation (checked when the snapshot is written, from where the last check
ended), its length and CRC-32, the snapshot's own length and CRC-32, and the Optuna version
that pickled it. Optuna never reads past a line it cannot parse, so its state is of
operations inside that prefix. The snapshot is ignored (the journal is then replayed as
before) when any of that no longer holds: a journal cut back by a repair, a changed byte,
a half-written snapshot, another Optuna, a file another user could have written (not the
owner's, or writable by anyone). It is
written atomically, at most every ``SAVE_EVERY_S`` seconds per process, and a failure to
write it costs nothing but the time it would have saved.

It is a pickle, as Optuna's own snapshots are: open studies you trust (as with a model
checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zlib
from pathlib import Path
from typing import Any

import optuna

# Optuna's optional base class for journal backends that keep snapshots; it lives in a
# private module of optuna.storages.journal (optuna 4.0-5.1, hence the pin below 5.2 in
# pyproject.toml). JournalStorage calls save_snapshot/load_snapshot on such a backend.
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._base import BaseJournalSnapshot

from threshnet.fileio import atomic_write

SAVE_EVERY_S = 30.0
CHUNK = 1 << 22


def is_operation(line: bytes) -> bool:
    """Whether ``line`` is one complete journal operation: a JSON object and its newline."""
    if not line.endswith(b"\n"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return False


def _checksum(path: Path, size: int, *, start: int = 0, crc: int = 0) -> int:
    """CRC-32 of the first ``size`` bytes of ``path``; from ``start``, continuing ``crc``
    (that of the bytes before it)."""
    size -= start
    with open(path, "rb") as handle:
        handle.seek(start)
        while size > 0:
            block = handle.read(min(CHUNK, size))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            size -= len(block)
    return crc


def _operations_end(journal: Path, start: int) -> int:
    """Where the complete operations of ``journal`` from byte ``start`` (a line's start)
    end: at the first line that is not one, or at the end of the file."""
    end = start
    with open(journal, "rb") as handle:
        handle.seek(start)
        for line in handle:
            if not is_operation(line):
                break
            end += len(line)
    return end


def _read(snapshot_path: Path, *, body: bool) -> tuple[dict[str, Any], bytes]:
    """The snapshot file's header, and its snapshot when ``body``; ValueError when another
    user could have written it."""
    status = snapshot_path.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o002:
        raise ValueError(f"{snapshot_path} is not this user's alone")
    with open(snapshot_path, "rb") as handle:
        header = json.loads(handle.readline())
        return header, handle.read() if body else b""


def _prefix_holds(journal: Path, header: dict[str, Any]) -> bool:
    """Whether ``journal`` still begins with the prefix ``header`` vouches for."""
    size = header["journal_bytes"]
    return journal.stat().st_size >= size and _checksum(journal, size) == header["journal_crc32"]


class SnapshotJournalFileBackend(JournalFileBackend, BaseJournalSnapshot):
    """Optuna's journal file, plus a snapshot file (``<journal>.snapshot``)."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._journal = Path(file_path)
        self.snapshot_path = Path(f"{file_path}.snapshot")
        self._saved_at = -float("inf")
        # the journal's bytes known to be complete operations, and their CRC-32
        self._checked = (0, 0)

    def save_snapshot(self, snapshot: bytes) -> None:
        """Keep ``snapshot`` (Optuna's pickled state, just synced with the journal) with the
        prefix of complete operations the journal now begins with."""
        now = time.monotonic()
        if now - self._saved_at < SAVE_EVERY_S:
            return
        self._saved_at = now
        with contextlib.suppress(OSError):  # a snapshot only saves time: the journal has all
            journal = self._journal
            checked, crc = self._checked
            if journal.stat().st_size < checked:  # cut back under us
                checked, crc = 0, 0
            end = _operations_end(journal, checked)
            self._checked = end, _checksum(journal, end, start=checked, crc=crc)
            header = {
                "optuna": optuna.__version__,
                "journal_bytes": self._checked[0],
                "journal_crc32": self._checked[1],
                "snapshot_bytes": len(snapshot),
                "snapshot_crc32": zlib.crc32(snapshot),
            }

            def write(temp: Path) -> None:
                with open(temp, "wb") as handle:
                    handle.write(json.dumps(header).encode() + b"\n")
                    handle.write(snapshot)

            atomic_write(self.snapshot_path, write)

    def load_snapshot(self) -> bytes | None:
        """The kept snapshot, or None when there is none or it no longer fits the journal."""
        try:
            header, snapshot = _read(self.snapshot_path, body=True)
            fits = (
                header["optuna"] == optuna.__version__
                and len(snapshot) == header["snapshot_bytes"]
                and zlib.crc32(snapshot) == header["snapshot_crc32"]
                and _prefix_holds(self._journal, header)
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not fits:
            return None
        self._checked = header["journal_bytes"], header["journal_crc32"]
        return snapshot

    def __reduce__(self) -> tuple[type, tuple[str]]:  # Ray and Tune pickle the storage
        return (type(self), (str(self._journal),))


def vouched_bytes(journal: Path) -> int:
    """How many bytes at the start of ``journal`` its snapshot vouches for: complete
    operations, unchanged since it was written; 0 when there is no snapshot that fits."""
    try:
        header, _ = _read(Path(f"{journal}.snapshot"), body=False)
        return header["journal_bytes"] if _prefix_holds(journal, header) else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0
