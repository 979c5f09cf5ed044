"""The HTML report of a real smoke study, rendered in headless Chromium."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SmokeStudy

from studies.report import PROG, main
from threshnet.cli import run_cli

pytestmark = pytest.mark.slow
PUBLISHED = ("threshnet28", "threshnet79", "threshnet95")


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def _browser(*args: str) -> str:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=20000",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)
    return result.stdout


def _expected_points(trials_csv: Path) -> tuple[int, int, int]:
    """(plain trials, front, presets) computed here, independently of studies.pareto."""
    with open(trials_csv, newline="") as handle:
        rows = [
            r for r in csv.DictReader(handle) if r["state"] == "COMPLETE" and r["status"] == "ok"
        ]
    points = [(float(r["val_acc"]), float(r["latency_ms"]), r["preset"]) for r in rows]
    front = [
        p
        for p in points
        if not any(q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1]) for q in points)
    ]
    presets = [p for p in points if p[2]]
    plain = [p for p in points if not p[2] and p not in front]
    return len(plain), len(front), len(presets)


def test_report_renders_offline_with_every_point_and_label(smoke_study: SmokeStudy) -> None:
    assert smoke_study.result.returncode == 0, smoke_study.result.stderr[-2000:]
    assert run_cli(PROG, main, [str(smoke_study.root)]) == 0
    report = smoke_study.root / "report.html"
    page = report.read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", page), (
        "the report must be self-contained"
    )
    assert "proxy validation accuracies" in page and "not test errors" in page

    dom = _browser("--dump-dom", report.as_uri())
    tradeoff = dom[dom.index('id="plot-tradeoff"') : dom.index('id="plot-hypervolume"')]
    layer = tradeoff[tradeoff.index('class="scatterlayer') : tradeoff.index('class="legend"')]
    plain, front, presets = _expected_points(smoke_study.root / "trials.csv")
    assert layer.count('class="point"') == plain + front + presets
    labels = re.findall(r"<text[^>]*>(threshnet\d\d)</text>", layer)
    assert sorted(labels) == sorted(PUBLISHED)
    assert 'class="scatterlayer' in dom[dom.index('id="plot-hypervolume"') :]
    assert "parcoords" in dom[dom.index('id="plot-parameters"') :]
    table = dom[dom.index('id="pareto-table"') :]
    assert table[: table.index("</table>")].count("<tr>") == front + 1  # header row
    assert "Hypervolume" in dom and "reference point" in dom

    screenshot = smoke_study.root / "report.png"
    _browser("--window-size=1300,2600", f"--screenshot={screenshot}", report.as_uri())
    assert screenshot.stat().st_size > 50_000
    print(f"screenshot: {screenshot}")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["/no/such/study"], "is not a directory"), (["."], "no manifest.json")],
)
def test_report_errors_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(PROG, main, args) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
