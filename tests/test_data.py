"""Decoding once, the cache (hits, stale and corrupt files), splits and layout errors."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from pathlib import Path

import pytest
import torch
from conftest import CLASSES, write_image_folder

from search.setup.proxy_data import MIN_PROXY_STEPS, check_proxy_size
from search.setup.settings import SMOKE_SETTINGS
from threshnet.fileio import remove_stale_temporaries
from threshnet.training.data import (
    DataError,
    load_split,
    stratified_split,
    stratified_subset,
    writable_cache_root,
)


def test_image_folder_loads_as_uint8_with_sorted_classes(tiny_folder: Path, tmp_path: Path) -> None:
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    assert data.images.shape == (36, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.classes == tuple(sorted(CLASSES))
    assert torch.bincount(data.labels).tolist() == [12, 12, 12]
    # class "cat" (label 0) was written with a bright red channel
    assert data.images[data.labels == 0][:, 0].float().mean() > 150


def test_cache_is_reused_and_a_corrupt_one_rebuilt(
    tiny_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    first = load_split("train", data_dir=tiny_folder, cache_dir=cache)
    (cache_file,) = cache.glob("imagefolder-train-*.pt")
    mtime = cache_file.stat().st_mtime_ns
    again = load_split("train", data_dir=tiny_folder, cache_dir=cache)
    assert cache_file.stat().st_mtime_ns == mtime  # a hit: not rewritten
    assert torch.equal(again.images, first.images)

    cache_file.write_bytes(cache_file.read_bytes()[:-200])  # truncated by a crash
    with caplog.at_level(logging.WARNING):
        rebuilt = load_split("train", data_dir=tiny_folder, cache_dir=cache)
    assert "rebuilding" in caplog.text
    assert torch.equal(rebuilt.images, first.images)
    assert torch.load(cache_file, weights_only=True)["images"].shape == first.images.shape


def test_changed_source_gets_a_new_cache(tiny_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = load_split("train", data_dir=tiny_folder, cache_dir=cache)
    write_image_folder(tiny_folder, per_class=13, splits=("train",), seed=1)
    after = load_split("train", data_dir=tiny_folder, cache_dir=cache)
    assert len(after) == 39 != len(before)
    assert not torch.equal(after.images[:36], before.images)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("no-train", "no 'train' folder"),
        ("one-class", "1 class folder(s), need 2"),
        ("empty-class", "has no images"),
        ("not-an-image", "cannot decode image"),
    ],
)
def test_bad_layouts_say_what_was_expected(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "data"
    if layout == "no-train":
        (root / "test" / "a").mkdir(parents=True)
    elif layout == "one-class":
        write_image_folder(root, per_class=2, classes=("only",))
    elif layout == "empty-class":
        write_image_folder(root, per_class=2)
        (root / "train" / "zebra").mkdir()
    elif layout == "not-an-image":
        write_image_folder(root, per_class=2)
        (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=re.escape(message)) as error:
        load_split("train", data_dir=root, cache_dir=tmp_path / "cache")
    assert "\n" not in str(error.value)


def test_stratified_split_is_disjoint_balanced_and_seeded() -> None:
    labels = torch.arange(10).repeat_interleave(50)
    train, val = stratified_split(labels, 100, seed=7)
    assert len(val) == 100 and len(train) == 400
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.bincount(labels[val]).tolist() == [10] * 10
    again_train, again_val = stratified_split(labels, 100, seed=7)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    _, other_val = stratified_split(labels, 100, seed=8)
    assert not torch.equal(val, other_val)
    _, fraction_val = stratified_split(labels, 0.1, seed=7)
    assert len(fraction_val) == 50


@pytest.mark.parametrize("size", [500, 2, 0.0, 1.5])
def test_split_too_large_or_bad_fails_clearly(size: float) -> None:
    labels = torch.arange(10).repeat_interleave(50)
    with pytest.raises(DataError, match=r"validation size|fraction"):
        stratified_split(labels, size, seed=0)


def test_subset_keeps_every_class() -> None:
    labels = torch.arange(4).repeat_interleave(25)
    subset = stratified_subset(labels, 0.2, seed=0)
    assert torch.bincount(labels[subset]).tolist() == [5, 5, 5, 5]
    assert len(stratified_subset(labels, 1.0, seed=0)) == 100


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_an_archive_of_an_image_folder_is_extracted_once(
    tiny_folder: Path, tmp_path: Path, suffix: str
) -> None:
    import shutil

    base = tmp_path / "bundle"
    archive = Path(
        shutil.make_archive(
            str(base),
            "gztar" if suffix == ".tar.gz" else "zip",
            root_dir=tiny_folder.parent,
            base_dir=tiny_folder.name,
        )
    )
    cache = tmp_path / "cache"
    from_folder = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "other")
    from_archive = load_split("train", data_dir=archive, cache_dir=cache)
    assert torch.equal(from_archive.images, from_folder.images)
    (extracted,) = (path for path in (cache / "extracted").iterdir() if path.is_dir())
    marker = (extracted / ".complete").stat().st_mtime_ns
    load_split("train", data_dir=archive, cache_dir=cache)
    assert (extracted / ".complete").stat().st_mtime_ns == marker


def _resolve_counting_extractions(archive: Path, cache: Path, calls: Path, start) -> str:
    """resolve_data_dir in a child process, each extraction leaving a file in ``calls``."""
    import threshnet.training.data as data

    extract = data._extract

    def slow_extract(source: Path, into: Path) -> None:
        (calls / str(os.getpid())).touch()
        extract(source, into)
        time.sleep(1.0)  # the others have started by now

    data._extract = slow_extract
    start.wait()
    return str(data.resolve_data_dir(archive, cache))


def test_processes_that_start_at_once_extract_an_archive_once(
    tiny_folder: Path, tmp_path: Path
) -> None:
    # Two trainings started side by side used to extract it twice, the second replacing
    # the first's copy while that one was reading it (FileNotFoundError mid-scan).
    import multiprocessing
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    archive = shutil.make_archive(
        str(tmp_path / "bundle"), "gztar", root_dir=tiny_folder.parent, base_dir=tiny_folder.name
    )
    calls = tmp_path / "calls"
    calls.mkdir()
    context = multiprocessing.get_context("fork")  # the children share the patch and barrier
    start = context.Manager().Barrier(3)
    with ProcessPoolExecutor(3, mp_context=context) as pool:
        children = [
            pool.submit(
                _resolve_counting_extractions, Path(archive), tmp_path / "cache", calls, start
            )
            for _ in range(3)
        ]
        roots = [child.result() for child in children]
    assert len(list(calls.iterdir())) == 1
    assert len(set(roots)) == 1
    assert (Path(roots[0]).parent / ".complete").exists()
    assert sorted(path.name for path in (Path(roots[0]) / "train").iterdir()) == sorted(CLASSES)


def test_a_plain_file_is_not_a_data_dir(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"is a file; expected a directory in ImageFolder layout"):
        load_split("train", data_dir=path, cache_dir=tmp_path / "cache")


def test_image_names_that_are_not_utf8_load(tiny_folder: Path, tmp_path: Path) -> None:
    cat = tiny_folder / "train" / "cat"
    first = sorted(cat.iterdir())[0]
    os.rename(first, os.path.join(os.fsencode(cat), b"caf\xe9-\xff.png"))  # Latin-1 bytes
    data = load_split("train", data_dir=tiny_folder, cache_dir=tmp_path / "cache")
    assert len(data) == 36 and data.classes == ("cat", "dog", "ship")


def test_stale_temporaries_are_removed_and_fresh_ones_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old_file = cache / ".imagefolder-train-x.pt.abc123.tmp"
    old_dir = cache / "extracted" / ".extract-q1w2e3"
    fresh = cache / ".imagefolder-test-y.pt.def456.tmp"
    kept = cache / "imagefolder-train-z.pt"
    for path in (old_file, old_dir / "train" / "a.png", fresh, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
    two_hours_ago = time.time() - 7200
    for path in (old_file, old_dir, kept):
        os.utime(path, (two_hours_ago, two_hours_ago))
    writable_cache_root(cache)  # what every load does first
    assert not old_file.exists() and not old_dir.exists()
    assert fresh.exists() and kept.exists()  # in progress elsewhere; not a temporary


def test_remove_stale_temporaries_only_touches_temporaries(tmp_path: Path) -> None:
    names = [".trials.csv.x1.tmp", ".extract-abc", "trials.csv", "notes.tmp", ".hidden"]
    for name in names:
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (0, 0))
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(path.name for path in removed) == [".extract-abc", ".trials.csv.x1.tmp"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".hidden",
        "notes.tmp",
        "trials.csv",
    ]


def test_a_proxy_of_few_optimiser_steps_is_warned_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="search"):
        check_proxy_size(SMOKE_SETTINGS, 3000)  # 3 x 47 = 141 steps
    assert caplog.records == []
    few = dataclasses.replace(
        SMOKE_SETTINGS, train=dataclasses.replace(SMOKE_SETTINGS.train, epochs=1)
    )
    with caplog.at_level("WARNING", logger="search"):
        check_proxy_size(few, 640)  # 1 x 10 steps
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "only 10 optimiser steps" in message and str(MIN_PROXY_STEPS) in message
