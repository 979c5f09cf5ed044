"""The HTML report of a real smoke study, rendered in headless Chromium, and its PNG export
(plotly's image export, kaleido driving the same Chromium)."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SmokeStudy
from PIL import Image

from studies.report import PNG_SCALE, PNG_WIDTH, PROG, main
from threshnet.cli import run_cli

pytestmark = pytest.mark.slow
PUBLISHED = ("threshnet28", "threshnet79", "threshnet95")
STATUSES = ("ok", "failed", "infeasible", "stopped", "interrupted")
# describe_config's notation: threshold, then dense (D) and harmonic (H) stages
ARCHITECTURE = re.compile(r"T\d \|( D\d+g\d+>\d+)*( H\d+k\d+m[\d.]+>\d+)*")


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


def _probe(page: Path, script: str, folder: Path) -> tuple[Any, str]:
    """What the body of a JavaScript function, ``script``, returns (as JSON) when run at
    the end of a copy of ``page`` in headless Chromium, after the page's own scripts; and
    the copy's DOM as rendered (one browser run for both)."""
    before, _, after = page.read_text().rpartition("</body>")
    probe = (
        '<pre id="probe"></pre><script>document.getElementById("probe").textContent = '
        f"JSON.stringify((function () {{ {script} }})());</script></body>"
    )
    copy = folder / "probe.html"
    copy.write_text(before + probe + after)
    dom = _browser("--dump-dom", copy.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run"
    return json.loads(html.unescape(found.group(1))), dom


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _eligible(root: Path) -> dict[int, dict[str, Any]]:
    """Finished, feasible trials by number, with the latency the report shows (the final
    pass's where it re-measured one steadily), read here independently of studies.load;
    p10/p90 of the search's passes on the study's scale (as its latency was scaled)."""
    again: dict[int, float] = {}
    if (root / "remeasured.csv").exists():
        with open(root / "remeasured.csv", newline="") as handle:
            again = {
                int(r["number"]): float(r["latency_ms"])
                for r in csv.DictReader(handle)
                if r["source"] == "re-measured"
            }

    def scale(r: dict[str, str]) -> float:
        return float(r["latency_ms"]) / float(r["latency_raw_ms"] or r["latency_ms"])

    return {
        int(r["number"]): {
            "val_acc": float(r["val_acc"]),
            "latency": again.get(int(r["number"]), float(r["latency_ms"])),
            "p10": float(r["latency_p10_ms"]) * scale(r),
            "p90": float(r["latency_p90_ms"]) * scale(r),
            "preset": r["preset"],
            "remeasured": int(r["number"]) in again,
        }
        for r in _rows(root)
        if r["state"] == "COMPLETE" and r["status"] == "ok"
    }


def _front(points: dict[int, dict[str, Any]]) -> set[int]:
    """Numbers of the points no other point dominates (higher accuracy, lower latency)."""

    def dominates(q: dict[str, Any], p: dict[str, Any]) -> bool:
        better = q["val_acc"] > p["val_acc"] or q["latency"] < p["latency"]
        return q["val_acc"] >= p["val_acc"] and q["latency"] <= p["latency"] and better

    return {n for n, p in points.items() if not any(dominates(q, p) for q in points.values())}


def _tradeoff_layer(dom: str) -> str:
    tradeoff = dom[dom.index('id="plot-tradeoff"') : dom.index('id="plot-hypervolume"')]
    return tradeoff[tradeoff.index('class="scatterlayer') : tradeoff.index('class="legend"')]


def _element(dom: str, element_id: str, tag: str) -> str:
    start = dom.index(f'id="{element_id}"')
    return dom[start : dom.index(f"</{tag}>", start)]


@dataclass(frozen=True)
class Report:
    root: Path
    page: Path
    dom: str  # as headless Chromium rendered it (with the probe's <pre> at the end)
    traces: list[dict[str, Any]]  # the trade-off plot's traces (_BARS_SCRIPT), same run


@pytest.fixture(scope="module")
def report(smoke_study: SmokeStudy, tmp_path_factory: pytest.TempPathFactory) -> Report:
    assert smoke_study.result.returncode == 0, smoke_study.result.stderr[-2000:]
    assert run_cli(PROG, main, [str(smoke_study.root)]) == 0
    page = smoke_study.root / "report.html"
    traces, dom = _probe(page, _BARS_SCRIPT, tmp_path_factory.mktemp("probe"))
    return Report(smoke_study.root, page, dom, traces)


def test_report_renders_offline_with_every_point_and_label(report: Report) -> None:
    page = report.page.read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", page), (
        "the report must be self-contained"
    )
    assert "proxy validation accuracies" in page and "not test errors" in page
    # No check of its own, and a proxy (on test images) that nobody measured: said so.
    fidelity = _element(page, "fidelity", "p")
    assert "Not checked, and not measured for this proxy" in fidelity, fidelity

    dom = report.dom
    layer = _tradeoff_layer(dom)
    points = _eligible(report.root)
    front = _front(points)
    presets = [n for n, p in points.items() if p["preset"]]
    assert len(presets) == len(PUBLISHED)
    # a preset on the front is drawn twice: as a front point and as its labelled star
    assert layer.count('class="point"') == len(points) + len(front & set(presets))
    labels = re.findall(r"<text[^>]*>(threshnet\d\d)</text>", layer)
    assert sorted(labels) == sorted(PUBLISHED)
    assert 'class="scatterlayer' in dom[dom.index('id="plot-hypervolume"') :]
    assert "parcoords" in dom[dom.index('id="plot-parameters"') :]
    table = _element(dom, "pareto-table", "table")
    assert table.count("<tr>") == len(front) + 1  # header row
    assert "Hypervolume" in dom and "reference point" in dom

    screenshot = report.root / "report.png"
    _browser("--window-size=1300,3400", f"--screenshot={screenshot}", report.page.as_uri())
    assert screenshot.stat().st_size > 50_000
    print(f"screenshot: {screenshot}")


def test_front_points_carry_their_trial_numbers(report: Report) -> None:
    layer = _tradeoff_layer(report.dom)
    texts = re.findall(r'<g class="textpoint"[^>]*><text[^>]*>([^<]*)</text>', layer)
    numbers = sorted(int(text) for text in texts if text.isdigit())
    assert numbers == sorted(_front(_eligible(report.root)))


_BARS_SCRIPT = (
    'return document.getElementById("plot-tradeoff").data.map(function (trace) {'
    "  return {name: trace.name, trials: trace.customdata, error_x: trace.error_x}; });"
)


def _bars(traces: list[dict[str, Any]]) -> tuple[list[int], dict[str, Any]]:
    """(trials with a latency bar, the bars' error_x) of a trade-off plot's traces."""
    bars = [trace for trace in traces if trace["name"] == "latency p10-p90 (search)"]
    assert len(bars) == 1 and all("error_x" not in t for t in traces if t not in bars)
    return bars[0]["trials"] or [], bars[0]["error_x"]


def test_latency_bars_span_the_search_p10_to_p90(report: Report, tmp_path: Path) -> None:
    # The smoke study ended with the final latency pass: no bar on a re-measured point.
    points = _eligible(report.root)
    with_bars, _ = _bars(report.traces)
    assert sorted(with_bars) == sorted(n for n, p in points.items() if not p["remeasured"])
    title = re.search(r'class="xtitle"[^>]*data-unformatted="([^"]*)"', report.dom).group(1)
    assert "p10-p90 of the search's timing passes (none on re-measured points)" in html.unescape(
        title
    )
    # Without the pass, every point has its bar, from its p10 to its p90.
    root = tmp_path / "study"
    shutil.copytree(report.root, root)
    (root / "remeasured.csv").unlink()
    assert run_cli(PROG, main, [str(root)]) == 0
    points = _eligible(root)
    traces, dom = _probe(root / "report.html", _BARS_SCRIPT, tmp_path)
    with_bars, bar = _bars(traces)
    assert bar["type"] == "data" and bar["symmetric"] is False
    assert sorted(with_bars) == sorted(points)
    for number, up, down in zip(with_bars, bar["array"], bar["arrayminus"], strict=True):
        assert points[number]["latency"] + up == pytest.approx(points[number]["p90"])
        assert points[number]["latency"] - down == pytest.approx(points[number]["p10"])
    assert _tradeoff_layer(dom).count('class="xerror"') == len(points)  # all drawn


def _sort(
    rows: list[dict[str, str]], key: str, *, numeric: bool, descending: bool
) -> list[dict[str, str]]:
    """What a click on a column header should do: a stable sort, empty cells last."""
    filled = [row for row in rows if row[key] != ""]
    empty = [row for row in rows if row[key] == ""]

    def value(row: dict[str, str]) -> float | str:
        return float(row[key]) if numeric else row[key].casefold()

    return sorted(filled, key=value, reverse=descending) + empty


def test_all_trials_table_lists_every_trial_and_sorts_by_clicking(
    report: Report, tmp_path: Path
) -> None:
    rows = _rows(report.root)
    table = _element(report.dom, "all-trials", "table")
    body = re.findall(r"<tr>(.*?)</tr>", table[table.index("<tbody>") :])
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in body]
    assert [int(c[0]) for c in cells] == [int(r["number"]) for r in rows]
    assert [(c[1], c[2]) for c in cells] == [(r["state"], r["status"]) for r in rows]
    errors = [html.unescape(c[-1]) for c in cells]
    assert errors == [r["error"] for r in rows] and any(errors)

    clicks = [  # (header, column, numeric)
        ("val acc", "val_acc", True),
        ("val acc", "val_acc", True),  # again: reversed
        ("latency ms (search)", "latency_ms", True),
        ("preset", "preset", False),
        ("trial", "number", True),
    ]
    # Two latencies that sort one way as numbers and the other as text (a fast machine's
    # latencies may all have one digit before the point), set in the page and in ``rows``.
    measured = [r["number"] for r in rows if r["latency_ms"]][:2]
    edits = dict(zip(measured, ("10.5", "9.5"), strict=True))
    rows = [{**r, "latency_ms": edits.get(r["number"], r["latency_ms"])} for r in rows]
    orders, _ = _probe(
        report.page,
        'var table = document.getElementById("all-trials");'
        f"var edits = {json.dumps(edits)};"
        "var column = Array.from(table.tHead.rows[0].cells).findIndex("
        '  function (th) { return th.textContent === "latency ms (search)"; });'
        "Array.from(table.tBodies[0].rows).forEach(function (row) {"
        "  var value = edits[row.cells[0].textContent];"
        "  if (value) { row.cells[column].dataset.value = value;"
        "    row.cells[column].textContent = value; } });"
        "var order = function () { return Array.from(table.tBodies[0].rows).map("
        "  function (row) { return Number(row.cells[0].textContent); }); };"
        f"return {json.dumps([label for label, _, _ in clicks])}.map(function (label) {{"
        "  Array.from(table.tHead.rows[0].cells).find("
        "    function (th) { return th.textContent === label; }).click();"
        "  return order(); });",
        tmp_path,
    )
    expected, previous = [], None
    for label, key, numeric in clicks:
        descending = label == previous
        rows = _sort(rows, key, numeric=numeric, descending=descending)
        expected.append([int(row["number"]) for row in rows])
        previous = None if descending else label
    assert orders == expected
    latencies = [row["latency_ms"] for row in rows if row["latency_ms"]]
    assert sorted(latencies, key=float) != sorted(latencies), "would not tell numbers from text"


def test_notation_legend_explains_the_architectures(report: Report) -> None:
    legend = html.unescape(_element(report.dom, "notation", "p"))
    example, *parts = re.findall(r"<code>(.*?)</code>", legend)
    assert ARCHITECTURE.fullmatch(example) and parts and all(part in example for part in parts)
    assert all(word in legend for word in ("threshold", "dense", "harmonic", "transition"))
    for table_id in ("pareto-table", "all-trials"):
        table = html.unescape(_element(report.dom, table_id, "table"))
        architectures = re.findall(r"<td[^>]*>(T\d[^<]*)</td>", table)
        assert architectures and all(ARCHITECTURE.fullmatch(a) for a in architectures)


def test_counts_line_counts_each_status(report: Report) -> None:
    counts = _element(report.dom, "counts", "p")
    shown = {
        status: int(count)
        for status, count in re.findall(r'<span data-status="([^"]*)">(\d+) ', counts)
    }
    recorded = Counter(row["status"] for row in _rows(report.root))
    assert set(STATUSES) <= set(shown)
    assert shown == {status: recorded.get(status, 0) for status in shown}
    assert shown["failed"] == 4  # the smoke study's injected faults
    assert "stopped early (by mo-asha)" in counts


def test_a_front_of_one_point_is_drawn(smoke_study: SmokeStudy, tmp_path: Path) -> None:
    """One eligible trial, without its p90 latency: one visible, numbered point, no bar."""
    rows = _rows(smoke_study.root)
    ok = [r for r in rows if r["state"] == "COMPLETE" and r["status"] == "ok"]
    single = next(r for r in ok if not r["preset"])
    study = tmp_path / "one"
    study.mkdir()
    shutil.copy(smoke_study.root / "manifest.json", study)
    with open(study / "trials.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*(r for r in rows if r not in ok), {**single, "latency_p90_ms": ""}])
    assert run_cli(PROG, main, [str(study)]) == 0
    dom = _browser("--dump-dom", (study / "report.html").as_uri())

    layer = _tradeoff_layer(dom)
    points = re.findall(
        r'<path class="point" transform="translate\(([\d.]+),([\d.]+)\)" '
        r'd="([^"]+)" style="([^"]*)"',
        layer,
    )
    assert len(points) == 1
    x, y, shape, style = points[0]
    svg = re.search(r'<svg class="main-svg"[^>]*width="(\d+)" height="(\d+)"', dom)
    assert 0 < float(x) < float(svg.group(1)) and 0 < float(y) < float(svg.group(2))
    assert shape and "opacity: 1;" in style and "fill-opacity: 1;" in style
    labels = re.findall(r'<g class="textpoint"[^>]*><text[^>]*>(\d+)</text>', layer)
    assert labels == [single["number"]]
    assert 'data-unformatted="Pareto front"' in dom
    assert 'class="xerror"' not in layer  # p90 missing: no bar


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_export_writes_the_tradeoff_plot(report: Report, tmp_path: Path) -> None:
    _chromium()  # kaleido drives the installed Chromium
    assert run_cli(PROG, main, [str(report.root), "--png"]) == 0
    assert _png_size(report.root / "tradeoff.png") == (PNG_WIDTH * PNG_SCALE, 560 * PNG_SCALE)
    chosen = tmp_path / "plot.png"
    assert run_cli(PROG, main, [str(report.root), "--png", str(chosen)]) == 0
    width, height = _png_size(chosen)
    assert width > 300 and height > 300
    with Image.open(chosen) as image:
        colours = {colour: count for count, colour in image.convert("RGB").getcolors(2**24)}
    assert colours.get((31, 119, 180), 0) > 200, "the front is not drawn"  # in its blue


@pytest.mark.parametrize(
    ("browser", "message"),
    [
        (None, "needs Chrome or Chromium and found none"),  # a path with nothing there
    ],
)
def test_png_export_without_a_working_chromium_is_one_line(
    browser: str | None, message: str, report: Report, tmp_path: Path
) -> None:
    """Run as a user would (a library's log lines would show on stderr here)."""
    browser = browser or str(tmp_path / "no-chromium")
    png = tmp_path / "plot.png"
    result = subprocess.run(
        [sys.executable, "-m", PROG, str(report.root), "--png", str(png)],
        env={**os.environ, "BROWSER_PATH": browser},  # choreographer looks there first
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr and f"BROWSER_PATH={browser}" in result.stderr
    assert "report.html and pareto.json are written" in result.stderr
    assert not png.exists()
    assert report.page.read_text().rstrip().endswith("</html>")
    assert json.loads((report.root / "pareto.json").read_text())["pareto_front"]


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
