"""The journal's snapshot (studies.journal_snapshot): a study opens from it, and a snapshot
that no longer describes the journal is never used."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from search.setup import journal
from studies import journal_snapshot
from studies.journal_snapshot import SnapshotJournalFileBackend, vouched_bytes


def _open(path: Path) -> JournalStorage:
    return JournalStorage(SnapshotJournalFileBackend(str(path)))


def _replayed(path: Path) -> list[tuple[int, str, dict, list | None]]:
    """The trials of the study in ``path`` as Optuna's own file backend replays them."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    return _trials(optuna.load_study(study_name="s", storage=storage))


def _trials(study: optuna.Study) -> list[tuple[int, str, dict, list | None]]:
    return [(t.number, t.state.name, t.params, t.values) for t in study.get_trials()]


def _grow(storage: JournalStorage, trials: int) -> optuna.Study:
    study = optuna.create_study(
        study_name="s", storage=storage, directions=["maximize", "minimize"], load_if_exists=True
    )
    for _ in range(trials):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        study.tell(trial, [x, 1 - x])
    return study


@pytest.fixture(autouse=True)
def _save_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_snapshot, "SAVE_EVERY_S", 0.0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_study_reopens_from_its_snapshot_and_the_journal_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 120)  # Optuna hands a snapshot over at trial 100
    backend = SnapshotJournalFileBackend(str(path))
    snapshot = backend.load_snapshot()
    assert snapshot is not None and backend.snapshot_path.exists()
    read_from: list[int] = []
    read_logs = SnapshotJournalFileBackend.read_logs

    def reading(self: SnapshotJournalFileBackend, log_number_from: int):
        read_from.append(log_number_from)
        return read_logs(self, log_number_from)

    monkeypatch.setattr(SnapshotJournalFileBackend, "read_logs", reading)
    reopened = optuna.load_study(study_name="s", storage=_open(path))
    assert read_from[0] > 100 * 3  # replayed from the snapshot's end, not from the start
    assert _trials(reopened) == _replayed(path)  # 100 from the snapshot, 20 replayed
    assert len(_trials(reopened)) == 120
    _grow(_open(path), 5)  # and it goes on from there
    assert len(_replayed(path)) == 125


def test_a_snapshot_of_more_than_the_journal_holds_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 110)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[: len(lines) // 3]))  # cut back, as a repair may
    assert SnapshotJournalFileBackend(str(path)).load_snapshot() is None
    reopened = optuna.load_study(study_name="s", storage=_open(path))
    assert _trials(reopened) == _replayed(path)
    assert len(_trials(reopened)) < 100  # no trial the journal no longer has


def test_a_journal_changed_before_the_snapshots_end_voids_it(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 105)
    data = bytearray(path.read_bytes())
    data[200] = ord("7") if data[200] != ord("7") else ord("8")  # same size, other bytes
    path.write_bytes(bytes(data))
    assert SnapshotJournalFileBackend(str(path)).load_snapshot() is None


@pytest.mark.parametrize("damage", ["snapshot", "header", "version", "empty"])
def test_a_damaged_or_foreign_snapshot_is_ignored(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 101)
    snapshot = Path(f"{path}.snapshot")
    header, body = snapshot.read_bytes().split(b"\n", 1)
    if damage == "snapshot":
        snapshot.write_bytes(header + b"\n" + body[:-10])  # half-written
    elif damage == "header":
        snapshot.write_bytes(b"not json\n" + body)
    elif damage == "version":
        fields = {**json.loads(header), "optuna": "0.1"}
        snapshot.write_bytes(json.dumps(fields).encode() + b"\n" + body)
    else:
        snapshot.write_bytes(b"")
    assert SnapshotJournalFileBackend(str(path)).load_snapshot() is None
    reopened = optuna.load_study(study_name="s", storage=_open(path))
    assert _trials(reopened) == _replayed(path)


def test_snapshots_are_written_at_most_every_save_every_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_snapshot, "SAVE_EVERY_S", 3600.0)
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 201)  # Optuna hands two over: the first is kept, the second waits
    header = json.loads(Path(f"{path}.snapshot").read_bytes().split(b"\n", 1)[0])
    assert header["journal_bytes"] < path.stat().st_size * 0.6


def test_damage_after_the_snapshot_is_found_without_parsing_what_it_vouches_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 110)
    vouched = vouched_bytes(path)
    assert 0 < vouched < path.stat().st_size and path.read_bytes()[vouched - 1 : vouched] == b"\n"
    with open(path, "ab") as handle:
        handle.write(b'{"op_code": 5, "worker')  # a write cut short by a crash
    parsed: list[bytes] = []
    is_operation = journal.is_operation
    monkeypatch.setattr(
        journal, "is_operation", lambda line: parsed.append(line) or is_operation(line)
    )
    damage = journal.find_damage(path)
    lines = path.read_bytes().splitlines(keepends=True)
    assert damage is not None and damage.first_bad_line == len(lines) and not damage.in_the_middle
    assert damage.good_bytes == path.stat().st_size - len(lines[-1])
    assert len(parsed) == len(lines) - path.read_bytes()[:vouched].count(b"\n")


def test_damage_inside_what_a_snapshot_vouched_for_voids_it_and_is_found(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 110)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[5] = b"not json\n"  # the file changed under the snapshot
    path.write_bytes(b"".join(lines))
    assert vouched_bytes(path) == 0
    damage = journal.find_damage(path)
    assert damage is not None and damage.first_bad_line == 6 and damage.in_the_middle


def test_a_snapshot_never_vouches_for_a_line_optuna_could_not_read(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    study = _grow(_open(path), 99)
    with open(path, "ab") as handle:
        handle.write(b'{"op_code": 5, "worker')  # a write cut short by a crash
    study.ask()  # its creation is glued onto that line, which Optuna skips at the end
    SnapshotJournalFileBackend(str(path)).save_snapshot(b"state")  # as Optuna may then
    vouched = vouched_bytes(path)
    assert 0 < vouched <= path.read_bytes().index(b'{"op_code": 5, "worker')
    damage = journal.find_damage(path)
    assert damage is not None and damage.good_bytes == vouched  # cut back on the next run


def test_the_storage_pickles_and_reopens_from_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 101)
    storage = pickle.loads(pickle.dumps(_open(path)))  # as Ray ships the searcher's storage
    study = optuna.load_study(study_name="s", storage=storage)
    assert _trials(study) == _replayed(path)
    _grow(storage, 1)
    assert len(_replayed(path)) == 102


def test_a_snapshot_anyone_could_have_written_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 101)
    snapshot = Path(f"{path}.snapshot")
    assert vouched_bytes(path) > 0
    snapshot.chmod(0o666)
    assert vouched_bytes(path) == 0
    assert SnapshotJournalFileBackend(str(path)).load_snapshot() is None


def test_a_later_snapshot_continues_the_checked_prefix_in_and_across_processes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "optuna.journal"
    _grow(_open(path), 201)  # two snapshots from one storage: the second extends the first
    first = json.loads(Path(f"{path}.snapshot").read_bytes().split(b"\n", 1)[0])
    _grow(_open(path), 100)  # a resumed run: it opens from the snapshot, then extends it
    last = json.loads(Path(f"{path}.snapshot").read_bytes().split(b"\n", 1)[0])
    assert first["journal_bytes"] < last["journal_bytes"] <= path.stat().st_size
    assert SnapshotJournalFileBackend(str(path)).load_snapshot() is not None  # CRCs agree
    reopened = optuna.load_study(study_name="s", storage=_open(path))
    assert _trials(reopened) == _replayed(path) and len(_trials(reopened)) == 301
