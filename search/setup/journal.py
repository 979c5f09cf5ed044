"""Checking the Optuna journal file before a run appends to it.

Optuna's journal is one JSON operation per line, appended with fsync. A crash or a full
disk in the middle of an append leaves a partial last line; the next append would glue
its operation onto it and make a line that no reader can parse, which blocks the study
for good. So before a run appends (it holds the study's run lock, so nobody else writes),
a damaged tail is cut back to the last complete operation, after keeping a copy of the
original beside it. Damage followed by good lines is not cut silently: the user decides.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from studies.journal_snapshot import is_operation, vouched_bytes


@dataclass(frozen=True)
class JournalDamage:
    """Where a journal stops being readable."""

    first_bad_line: int  # 1-based
    good_bytes: int  # length of the readable prefix
    total_lines: int
    in_the_middle: bool  # good operations follow the damage


def find_damage(path: Path) -> JournalDamage | None:
    """The first line of ``path`` that is not a complete JSON operation; None if all are.
    The lines its snapshot vouches for (studies.journal_snapshot.vouched_bytes: checked
    when it was written, unchanged since) are not parsed again: 1.2 s of a resume at
    10,000 trials."""
    with open(path, "rb") as handle:
        lines = handle.readlines()
    vouched = vouched_bytes(path)
    good_bytes = 0
    for index, line in enumerate(lines):
        if good_bytes + len(line) <= vouched:
            good_bytes += len(line)
            continue
        if not is_operation(line):
            later = lines[index + 1 :]
            return JournalDamage(
                first_bad_line=index + 1,
                good_bytes=good_bytes,
                total_lines=len(lines),
                in_the_middle=any(is_operation(other) for other in later),
            )
        good_bytes += len(line)
    return None


def repair_journal(path: Path, *, cut_middle: bool = False) -> str | None:
    """Cut a damaged tail of the journal at ``path`` (keeping a copy); a line saying so.

    Returns None when the journal is intact. Raises ValueError (one line, saying how to
    recover) when the damage has good operations after it, unless ``cut_middle``.
    """
    if not path.exists():
        return None
    damage = find_damage(path)
    if damage is None:
        return None
    if damage.in_the_middle and not cut_middle:
        raise ValueError(
            f"{path} is damaged at line {damage.first_bad_line} of {damage.total_lines}, with "
            "good operations after it; restore it from a backup, or rerun with "
            f"--repair-journal to keep the {damage.first_bad_line - 1} operations before the "
            "damage (a copy of the file is kept)"
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    copy = path.with_name(f"{path.name}.damaged-{stamp}")
    try:
        shutil.copy2(path, copy)
    except OSError:
        copy.unlink(missing_ok=True)  # a partial copy helps nobody; the journal is untouched
        raise
    with open(path, "r+b") as handle:
        handle.truncate(damage.good_bytes)
        os.fsync(handle.fileno())
    lost = damage.total_lines - damage.first_bad_line + 1
    return (
        f"{path.name} had {lost} unreadable line(s) from line {damage.first_bad_line} on "
        f"(an interrupted write); cut back to the last complete operation, original kept "
        f"as {copy.name}"
    )
