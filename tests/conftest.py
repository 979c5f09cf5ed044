"""Shared fixtures: deterministic torch, and tiny ImageFolder datasets written to disk."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
from PIL import Image

from search.setup.study import StudyDirectory
from threshnet.cli import run_cli

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


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none (readers that
    check the header first refuse it before decoding anything)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + iend


def make_archive(folder: Path, archive: Path) -> Path:
    """``folder`` packed as a .tar.xz (one top folder inside, like the CIFAR-10 archive)."""
    with tarfile.open(archive, "w:xz") as bundle:
        bundle.add(folder, arcname=folder.name)
    return archive


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _optuna_verbosity_restored() -> Iterator[None]:
    """Tests that quiet Optuna's logger leave it as they found it (other tests read it)."""
    level = optuna.logging.get_verbosity()
    yield
    optuna.logging.set_verbosity(level)


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "data", per_class=12)


@pytest.fixture
def directory(tmp_path: Path) -> StudyDirectory:
    """An empty, created study directory."""
    directory = StudyDirectory(tmp_path / "study")
    directory.create()
    return directory


@dataclass(frozen=True)
class SmokeStudy:
    """A study made by the real CLI (`search.run --smoke`) on a tiny dataset."""

    root: Path
    command: list[str]
    result: subprocess.CompletedProcess[str]


FAULT_INJECTION = Path(__file__).parent / "fault_injection"


def search_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", **extra}


def fault_env(**faults: str) -> dict[str, str]:
    """``search_env`` with the test-only fault injector (tests/fault_injection) loaded in
    every Python process the command starts, Ray workers included; see its docstring."""
    path = os.pathsep.join(filter(None, [str(FAULT_INJECTION), os.environ.get("PYTHONPATH")]))
    return search_env(PYTHONPATH=path, **faults)


def smoke_command(data_dir: Path, out: Path, name: str, trials: int, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "search.run",
        "--smoke",
        "--trials",
        str(trials),
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--name",
        name,
        "--cache-dir",
        str(cache),
        "--num-cpus",
        "2",
    ]


def simulated_command(out: Path, name: str, trials: int, seconds: str = "2,0.5") -> list[str]:
    """``search.run --simulate``: the real driver, Ray and storage, with trials that sleep
    ``seconds`` (mean,spread) instead of training. For what the driver does (signals,
    storage faults, resume), seconds instead of a smoke study's minutes."""
    return [
        sys.executable,
        "-m",
        "search.run",
        "--simulate",
        "compute",
        "--simulate-seconds",
        seconds,
        "--trials",
        str(trials),
        "--out",
        str(out),
        "--name",
        name,
        "--num-cpus",
        "2",
    ]


@pytest.fixture(scope="session")
def search_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training images only, plus a test split that cannot be decoded: a search that read
    the test split would fail."""
    root = write_image_folder(tmp_path_factory.mktemp("data"), per_class=34, splits=("train",))
    for name in CLASSES:
        broken = root / "test" / name
        broken.mkdir(parents=True)
        (broken / "0000.png").write_bytes(b"this is not an image")
    return root


@pytest.fixture(scope="session")
def smoke_study(search_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SmokeStudy:
    """Eight trials: the three presets first; trial 3 raises, 4 runs out of (CUDA) memory,
    5 reaches a NaN loss, and 6's worker process dies."""
    base = tmp_path_factory.mktemp("smoke")
    command = smoke_command(search_data_dir, base / "runs", "e2e", 8, base / "cache")
    result = subprocess.run(
        command,
        env=fault_env(THRESHNET_SEARCH_FAULTS="3=raise,4=oom,5=nan,6=exit"),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return SmokeStudy(base / "runs" / "e2e", command, result)


def cli_error(
    prog: str,
    main: Callable[[Sequence[str] | None], int],
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Run a CLI as users do (run_cli) with ``argv``, which must fail with exit status 2
    and exactly one line on stderr; that line."""
    try:
        code = run_cli(prog, main, argv)
    except SystemExit as exit_:  # argparse errors exit directly
        code = exit_.code
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    return error


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test on the shared smoke study is slow: the study is a real search (60-90 s on
    2 cores), which the fast suite (`-m "not slow"`) would otherwise pay for. A long test
    is slow too: the fast suite leaves it out as CI does."""
    for item in items:
        if "smoke_study" in getattr(item, "fixturenames", ()) or item.get_closest_marker("long"):
            item.add_marker(pytest.mark.slow)
