"""The GPU check script, dry-run on the CPU: every step runs and the summary is written."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import search_env, write_image_folder

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.long  # time-boxed windows: a bench harness, meaningful on idle cores
def test_the_gpu_check_dry_run_writes_its_summary(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "tree" / "cifar10-jpeg", per_class=40)
    archive = tmp_path / "cifar10-jpeg.tar.xz"
    with tarfile.open(archive, "w:xz") as bundle:
        bundle.add(tmp_path / "tree" / "cifar10-jpeg", arcname="cifar10-jpeg")
    out = tmp_path / "out"
    command = ["bash", "bench/gpu_check.sh", str(archive), "-", str(out), "--", "--dry-run"]
    command += ["--search-seconds", "30", "--per-gpu", "1,2", "--latency-rounds", "2"]
    command += ["--cache-dir", str(tmp_path / "cache")]
    result = subprocess.run(
        command,
        cwd=REPO,
        env=search_env(PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "summary.json").read_text())
    assert report["dry_run"] and [row["per_gpu"] for row in report["search"]] == [1, 2]
    for row in report["search"]:
        assert row["finished"] >= 1 and row["trials_per_hour"] > 0, row
        assert row["worker_overhead_s"] is not None and row["projected_minutes"] > 0
    assert report["search"][0]["gap_overhead_s"] is not None  # one trial at a time
    assert report["throughput"]["ratio"]["median"] > 0
    assert report["latency"]["ranking_stable"] in (True, False)
    assert len(report["latency"]["rankings"]) == 2
    assert len(report["latency"]["with_neighbour"]["rankings"]) == 2
    assert report["latency"]["warmup_passes"]["min"] >= 2  # both networks' warm-up
    summary = (out / "summary.md").read_text()
    assert "| 1 |" in summary and "| 2 |" in summary and "Proxy throughput, ours" in summary
    assert "Preset latency alone" in summary and "with a busy neighbour" in summary


def test_the_gpu_check_needs_an_archive_and_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", "bench/gpu_check.sh", str(tmp_path / "missing.tar.xz")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "usage:" in result.stderr


def test_without_optuna_or_ray_it_asks_for_a_wheelhouse(tmp_path: Path) -> None:
    archive = tmp_path / "cifar10-jpeg.tar.xz"
    archive.write_bytes(b"")
    python = "/usr/bin/python3"  # the system's, which has neither
    if subprocess.run([python, "-c", "import optuna"], capture_output=True).returncode == 0:
        pytest.skip("the system Python has optuna")
    result = subprocess.run(
        ["bash", "bench/gpu_check.sh", str(archive), "-", str(tmp_path / "out")],
        cwd=REPO,
        env=search_env(PYTHON=python),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "no wheelhouse directory was given" in result.stderr
