"""``python -m studies.report <study-dir>``: one self-contained HTML report of a study.

Writes ``<study-dir>/report.html`` (plotly.js embedded, opens offline) and
``<study-dir>/pareto.json`` (front, hypervolume and its reference point, and which front
points dominate each published preset). Works on a finished or a running study.

``--png [PATH]`` also writes the trade-off plot as a PNG (default
``<study-dir>/tradeoff.png``) with plotly's image export: kaleido drives a local Chrome or
Chromium, which its choreographer finds as ``$BROWSER_PATH``, else on ``PATH``
(``google-chrome``, ``chromium``, ...), else at the usual places such as
``/usr/bin/chromium``.
"""

from __future__ import annotations

import html
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from studies import schema
from studies.fidelity import Ladder, ladder_summary
from studies.figures import (
    describe_config,
    fidelity_scatter,
    hypervolume_figure,
    ladder_figure,
    parameters_figure,
    tradeoff_figure,
)
from studies.load import Study, StudyError, eligible_trials, load_study
from studies.measured_fidelity import unchecked_text
from studies.pareto import (
    Reference,
    default_reference,
    dominators,
    hypervolume,
    hypervolume_history,
    pareto_front,
)
from studies.schema import LATENCY_SCALE_KEY
from threshnet.cli import ArgumentParser, UserError, finite_float, run_cli
from threshnet.fileio import atomic_write, atomic_write_text
from threshnet.presets import PUBLISHED_PRESETS
from threshnet.steady_latency import STEADY_SE

PROG = "studies.report"
NOTE = (
    "Accuracies are proxy validation accuracies: short training on the training split minus "
    "a held-out validation split. They rank architectures; they are not test errors, and "
    "the test set was not read during the search."
)
NOTATION = (
    "Architecture notation (hover text and tables), e.g. "
    "<code>T2 | D6g32&gt;128 D8g32&gt;192 H16k40m1.7&gt;480</code>: <code>T2</code> is the "
    "threshold, the number of leading stages that are dense (the later ones are harmonic); "
    "<code>D6g32&gt;128</code> is a dense (DenseNet) stage of depth 6 and growth rate 32 "
    "whose 1x1 transition gives 128 channels; <code>H16k40m1.7&gt;480</code> is a harmonic "
    "(HarDNet) stage of depth 16, base width k 40 and width multiplier m 1.7, with a "
    "transition to 480 channels."
)
# Trial statuses (studies.schema.RECORD_FIELDS), each always counted, as the report words them.
STATUS_LABELS = {
    "ok": "ok",
    "failed": "failed",
    "infeasible": "infeasible",
    "stopped": "stopped early (by mo-asha)",
    "interrupted": "interrupted",
}
DEFAULT_PNG = "tradeoff.png"
PNG_WIDTH, PNG_SCALE = 1200, 2  # CSS pixels and device pixels per CSS pixel


@dataclass(frozen=True)
class Analysis:
    """Everything the report shows, computed once."""

    study: Study
    eligible: pd.DataFrame
    front: pd.DataFrame
    reference: Reference
    hypervolume: float
    history: pd.DataFrame
    preset_dominators: dict[str, list[int]]
    baselines: pd.DataFrame  # measured other-family networks, with "dominated_by"
    fidelity: Ladder | None  # the proxy-fidelity check, if it ran

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study.name,
            "eligible_trials": len(self.eligible),
            "pareto_front": [int(n) for n in self.front["number"]],
            "hypervolume": self.hypervolume,
            "reference_point": self.reference.to_dict(),
            "preset_dominated_by": self.preset_dominators,
            "baselines": {
                row["name"]: {
                    "source": row["source"],
                    "val_acc": float(row["val_acc"]),
                    "latency_ms": float(row["latency_ms"]),
                    "params": int(row["params"]),
                    "dominated_by": row["dominated_by"],
                }
                for _, row in self.baselines.iterrows()
            },
            "latencies": latency_note(self.study),
            "simulated": simulation_note(self.study.settings),
            "remeasured_trials": (
                []
                if self.study.remeasured is None
                else [int(n) for n in self.study.remeasured["number"]]
            ),
            "fidelity": None if self.fidelity is None else self.fidelity.to_dict(),
        }


def _measured_baselines(study: Study, front: pd.DataFrame) -> pd.DataFrame:
    """The study's measured baselines, each with the front trials that dominate it."""
    table = study.baselines
    if table is None:
        return pd.DataFrame(columns=[*schema.BASELINE_FIELDS, "dominated_by"])
    measured = table[table["status"] == "ok"].copy()
    measured["dominated_by"] = [dominators(front, row) for _, row in measured.iterrows()]
    return measured


def analyse(study: Study, reference: Reference | None = None) -> Analysis:
    """Front, hypervolume (with a recorded reference point) and preset dominators."""
    eligible = eligible_trials(study)
    front = pareto_front(eligible)
    reference = reference or default_reference(eligible)
    preset_dominators = {
        row.preset: dominators(front, eligible.loc[row.Index])
        for row in eligible[eligible["preset"].isin(PUBLISHED_PRESETS)].itertuples()
    }
    return Analysis(
        study=study,
        eligible=eligible,
        front=front,
        reference=reference,
        hypervolume=hypervolume(eligible, reference),
        history=hypervolume_history(eligible, reference),
        preset_dominators=preset_dominators,
        baselines=_measured_baselines(study, front),
        fidelity=ladder_summary(study),
    )


def _table(frame: pd.DataFrame, columns: list[tuple[str, str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    rows = []
    for record in frame.to_dict("records"):
        cells = "".join(f"<td>{html.escape(str(record[key]))}</td>" for key, _ in columns)
        rows.append(f"<tr>{cells}</tr>")
    body = "".join(rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _ladder_table(ladder: Ladder) -> str:
    """The fidelity ladder: each rung against the long budget, cheapest first."""
    rows = [
        {
            "rung": f"{ladder.proxy} (search)" if row.rung == "search" else row.rung,
            "kind": row.kind,
            "configs": row.configs,
            "seconds": f"{row.seconds:.3g}",
            "tau": row.kendall.text(),
            "rho": row.spearman.text(),
            "top_k": f"{row.top_k:.2f}",
            "recall": f"{row.front_recall:.2f}",
        }
        for row in ladder.rungs
    ]
    columns = [
        ("rung", "rung"),
        ("kind", "kind"),
        ("configs", "configs"),
        ("seconds", "s / config"),
        ("tau", f"Kendall tau vs {ladder.long} [95 % CI]"),
        ("rho", "Spearman rho [95 % CI]"),
        ("top_k", f"top-{ladder.k} overlap"),
        ("recall", "front recall"),
    ]
    note = (
        f"<p>Seed-noise ceiling (Kendall tau between two seeds of the proxy): "
        f"{html.escape(ladder.ceiling.text())}.</p>"
    )
    return _table(pd.DataFrame(rows), columns, "fidelity-ladder") + note


def _front_table(front: pd.DataFrame) -> str:
    shown = front.assign(
        architecture=front["config_json"].map(describe_config),
        val_acc=front["val_acc"].map(lambda v: f"{v:.4f}"),
        latency_ms=front["latency_ms"].map(lambda v: f"{v:.3f}"),
        params=front["params"].map(lambda v: f"{int(v):,}"),
        macs=front["macs"].map(lambda v: f"{int(v) / 1e6:.1f} M"),
        latency_cv=front["latency_figure_cv"].map(_percent),
        latency_se=front["latency_figure_se"].map(_percent),
        latency_rounds=front["latency_figure_rounds"].map(_count),
    )
    columns = [
        ("number", "trial"),
        ("preset", "preset"),
        ("val_acc", "val acc"),
        ("latency_ms", "latency ms"),
        ("latency_source", "latency from"),
        ("latency_cv", "its CV"),
        ("latency_se", "its SE"),
        ("latency_rounds", "rounds"),
        ("params", "params"),
        ("macs", "MACs"),
        ("architecture", "architecture"),
    ]
    return _table(shown, columns, "pareto-table")


def _percent(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.1%}"


def _count(value: float) -> str:
    return "" if pd.isna(value) else str(int(value))


def _number(spec: str) -> Callable[[Any], str]:
    return lambda value: format(value, spec)


# (column, header, format of a number or None for text) of the all-trials table
_ALL_TRIALS_COLUMNS: tuple[tuple[str, str, Callable[[Any], str] | None], ...] = (
    ("number", "trial", _number("d")),
    ("state", "state", None),
    ("status", "status", None),
    ("preset", "preset", None),
    ("val_acc", "val acc", _number(".4f")),
    ("latency_ms", "latency ms (search)", _number(".3f")),
    ("params", "params", _number(",d")),
    ("macs", "MACs", lambda value: f"{value / 1e6:.1f} M"),
    ("epochs", "epochs", _number("d")),
    ("trial_seconds", "seconds", _number(".1f")),
    ("architecture", "architecture", None),
    ("error", "error", None),
)
# Sorts a table of class "sortable" by the header clicked: numbers by their data-value,
# text by its content, empty cells last; clicking the same header again reverses.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var headers = Array.from(table.tHead.rows[0].cells);
  headers.forEach(function (header, column) {
    header.addEventListener("click", function () {
      var descending = header.getAttribute("aria-sort") === "ascending";
      var numeric = header.dataset.type === "number";
      var key = function (row) {
        var cell = row.cells[column];
        return numeric ? cell.dataset.value : cell.textContent;
      };
      var body = table.tBodies[0];
      var rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") return (x === "") - (y === "");
        var order = numeric ? x - y : x.localeCompare(y);
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    });
  });
});
"""


def _header(label: str, *, numeric: bool) -> str:
    kind = ' data-type="number"' if numeric else ""
    return f'<th{kind} title="click to sort">{html.escape(label)}</th>'


def _cell(value: Any, number: Callable[[Any], str] | None) -> str:
    missing = bool(pd.isna(value))
    if number is None:
        return f"<td>{'' if missing else html.escape(str(value))}</td>"
    if missing:
        return '<td class="num" data-value=""></td>'
    return f'<td class="num" data-value="{value}">{html.escape(number(value))}</td>'


def _all_trials_table(trials: pd.DataFrame) -> str:
    """Every row of the trials table, sortable by clicking a column header."""
    shown = trials.reindex(columns=[key for key, _, _ in _ALL_TRIALS_COLUMNS])
    configs = trials.get("config_json", pd.Series("", index=trials.index))
    shown["architecture"] = configs.fillna("").map(describe_config)
    head = "".join(
        _header(label, numeric=number is not None) for _, label, number in _ALL_TRIALS_COLUMNS
    )
    rows = "".join(
        "<tr>"
        + "".join(_cell(record[key], number) for key, _, number in _ALL_TRIALS_COLUMNS)
        + "</tr>"
        for record in shown.to_dict("records")
    )
    return (
        f'<table id="all-trials" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _status_counts(trials: pd.DataFrame) -> str:
    """How many trials have each status: the known ones always, any other one present."""
    counts = trials["status"].value_counts() if "status" in trials else pd.Series(dtype=int)
    statuses = [*STATUS_LABELS, *sorted(set(counts.index) - set(STATUS_LABELS))]
    return ", ".join(
        f'<span data-status="{html.escape(status)}">{int(counts.get(status, 0))} '
        f"{html.escape(STATUS_LABELS.get(status, status or 'without a status'))}</span>"
        for status in statuses
    )


def _validation_text(settings: dict[str, Any]) -> str:
    size = settings["val_size"]
    text = f"{size:.0%} of the training images" if isinstance(size, float) else f"{size} images"
    if settings.get("max_val_images"):
        text += f" (at most {settings['max_val_images']})"
    return f"{text}, class-stratified, split seed {settings['split_seed']}"


def _settings_block(study: Study) -> str:
    settings = study.settings
    train, latency = settings["train"], settings["latency"]
    lines = {
        "proxy": f"{train['epochs']} epochs, batch {train['batch_size']}, {train['optimizer']} "
        f"lr {train['lr']}, {train['schedule']}, augment {train['augment']}, "
        f"input {train['input_size']}",
        "validation": _validation_text(settings),
        "latency": f"batch 1, {latency['repeats']} repeats after {latency['warmup']} warm-up, "
        f"device '{latency['device']}', {latency_backend(study)}",
        "sampler": f"{_sampler_text(settings)}, seed {settings['seed']}",
        "data": "none: a simulated study"
        if settings.get("simulation")
        else str(settings["data_dir"] or "torchvision CIFAR-10"),
        "versions": ", ".join(f"{k} {v}" for k, v in study.manifest.get("versions", {}).items()),
        "git revision": str(study.manifest.get("git_revision", "")),
    }
    items = "".join(
        f"<dt>{html.escape(key)}</dt><dd>{html.escape(value)}</dd>" for key, value in lines.items()
    )
    return f'<dl id="settings">{items}</dl>'


def _sampler_text(settings: dict[str, Any]) -> str:
    if settings["sampler"] != "gp-tpe":
        return str(settings["sampler"])
    return f"gp-tpe (GP up to {settings['gp_trials']} complete trials, then TPE)"


def simulation_note(settings: dict[str, Any]) -> str | None:
    """The banner of a simulated study (``search.run --simulate``) by its settings; None
    for a real one."""
    simulation = settings.get("simulation")
    if not simulation:
        return None
    return (
        f"Simulated study: no network was trained or timed. Each trial slept "
        f"{simulation['seconds']:g} +- {simulation['spread']:g} s and returned the "
        f"'{simulation['surrogate']}' surrogate's accuracy and latency, computed from the "
        "config's closed-form costs (search.methods.surrogates). It sizes a driver or a "
        "cluster; its front says nothing about real networks."
    )


def latency_backend(study: Study) -> str:
    """What ran the timed passes (a manifest without a backend is from before the choice)."""
    if study.settings["latency"].get("backend", "eager") == "onnxruntime":
        return "ONNX Runtime (each network's ONNX export)"
    return "eager PyTorch"


def _latency_label(analysis: Analysis) -> str:
    names = analysis.eligible["latency_device_name"].dropna().unique().tolist()
    device = ", ".join(str(n) for n in names) or "unknown device"
    source = "re-measured" if analysis.eligible["latency_remeasured"].any() else "search"
    backend = latency_backend(analysis.study)
    return f"latency, ms (batch 1, median of rounds' fastest, {source}; {backend}; {device})"


def latency_note(study: Study) -> str:
    """Where the latencies on the front come from: their scale, the final pass or the
    search, and which backend ran them."""
    again = study.remeasured
    backend = latency_backend(study)
    scale = scale_note(study)
    if again is None or again.empty:
        return (
            "Latencies are as each trial measured them during the search (batch 1, in rounds "
            f"against the reference network ThreshNet28, in {backend}). {scale} They have not "
            f"been re-measured: run python -m studies.remeasure {study.root} for the final "
            "latency pass."
        )
    first = again.iloc[0]
    flagged = int(again["flagged"].sum())
    kept = (
        f"; {flagged} could not be timed steadily in any attempt and keep the search's "
        "figure (flagged in the front table)"
        if flagged
        else ""
    )
    return (
        f"Latencies of {len(again)} trials (the front candidates and the published presets) "
        f"were re-measured after the search on {first['device_name']} ({first['device']}), "
        f"{int(again['rounds'].median())} rounds in shuffled order against ThreshNet28, in "
        f"{backend}, at {first['measured_at'][:19]} UTC: {len(again) - flagged} steady "
        f"figures (the median ratio's relative standard error at most {STEADY_SE:.0%}, "
        f"rounds added while it was above; the machine not oversubscribed) replace the "
        f"search's{kept}; the front, hypervolume and tables use "
        f"them. {scale}"
    )


def scale_note(study: Study) -> str:
    """The study's latency scale in a sentence."""
    entries = study.manifest.get(LATENCY_SCALE_KEY)
    if entries is None:
        return "They are raw milliseconds (the study predates the study-wide latency scale)."
    if not entries:
        return "The study has no reference time yet; its latencies are raw milliseconds."
    times = "; ".join(
        f"{float(entry['ms']):.3f} ms on {kind} (from {entry['source']})"
        for kind, entry in entries.items()
    )
    clock = (
        " Passes on a one-thread CPU are timed by the thread's CPU time (the time a pass "
        "waited for a CPU left out), elsewhere by wall time."
        if study.settings["latency"].get("clock", "wall") == "cpu"
        else " Passes are timed by wall time."
    )
    return (
        "Each latency is the network's ratio to ThreshNet28, timed in the same rounds, times "
        f"the study's one reference time for its device kind: {times}.{clock}"
    )


def _tradeoff(analysis: Analysis) -> go.Figure | None:
    """The accuracy/latency trade-off plot; None before any trial is eligible."""
    if analysis.eligible.empty:
        return None
    return tradeoff_figure(
        analysis.eligible, analysis.front, _latency_label(analysis), analysis.baselines
    )


def render(analysis: Analysis) -> str:
    """The report page."""
    study = analysis.study
    tradeoff = _tradeoff(analysis)
    figures = []
    if tradeoff is not None:
        figures = [
            ("tradeoff", tradeoff),
            ("hypervolume", hypervolume_figure(analysis.history)),
            ("parameters", parameters_figure(analysis.eligible, study.param_columns)),
        ]
    fidelity = analysis.fidelity
    if fidelity is not None and len(fidelity.configs) >= 2:
        summary = fidelity.to_dict()
        ceiling = summary["seed_noise_ceiling"]["value"]
        figures.append(("ladder", ladder_figure(summary["rungs"], ceiling, fidelity.long)))
        title = f"Proxy ({fidelity.proxy}) accuracy against the long budget's ({fidelity.long})"
        figure = fidelity_scatter(fidelity.configs, fidelity.proxy, fidelity.long, title)
        figures.append(("fidelity", figure))
    fidelity_text = (
        f'<p id="fidelity">Does the proxy rank like longer training? '
        f"{html.escape(unchecked_text(study.settings, study.root))}</p>"
        if fidelity is None
        else f'<p id="fidelity">Does the proxy rank like longer training? '
        f"{html.escape(fidelity.line())} (python -m search.fidelity). "
        f"Advice: {html.escape(fidelity.advice())}.</p>"
        f"{_ladder_table(fidelity)}"
    )
    plots = (
        "\n".join(
            figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{name}")
            for name, figure in figures
        )
        or "<p>No finished, feasible trials yet.</p>"
    )
    states = study.trials["state"].value_counts().to_dict() if "state" in study.trials else {}
    counts = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    reference = analysis.reference
    baselines = "".join(
        f"<li>{html.escape(row['name'])} ({html.escape(row['source'])}): val acc "
        f"{row['val_acc']:.4f}, {row['latency_ms']:.3f} ms: "
        + (
            f"dominated by trial(s) {', '.join(map(str, row['dominated_by']))}"
            if row["dominated_by"]
            else "not dominated by the front"
        )
        + "</li>"
        for _, row in analysis.baselines.iterrows()
    )
    baselines_block = (
        "<p>Baselines, trained and timed like the trials (never searched):</p>"
        f'<ul id="baselines">{baselines}</ul>'
        if baselines
        else ""
    )
    dominated = "".join(
        f"<li>{html.escape(name)}: "
        + (f"dominated by trial(s) {', '.join(map(str, numbers))}" if numbers else "on the front")
        + "</li>"
        for name, numbers in analysis.preset_dominators.items()
    )
    title = f"threshnet-search study {html.escape(study.name)}"
    banner = simulation_note(study.settings)
    simulated = (
        "" if banner is None else f'<p class="banner" id="simulated">{html.escape(banner)}</p>\n'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
.note {{ background: #fff6d5; border-left: 4px solid #e0b000; padding: 8px 12px; }}
.banner {{ background: #fde2e2; border-left: 6px solid #c62828; padding: 10px 12px;
  font-size: 17px; font-weight: bold; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; white-space: nowrap; }}
table.sortable th {{ cursor: pointer; background: #f3f4f6; }}
th[aria-sort="ascending"]::after {{ content: " \\25B2"; }}
th[aria-sort="descending"]::after {{ content: " \\25BC"; }}
#all-trials td:last-child {{ white-space: pre-wrap; overflow-wrap: anywhere; min-width: 16em;
  max-width: 40em; font-family: monospace; font-size: 12px; }}
.wide {{ overflow-x: auto; }}
dt {{ font-weight: bold; float: left; clear: left; width: 110px; }}
dd {{ margin-left: 120px; }}
</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>{title}</h1>
{simulated}<p class="note" id="proxy-note">{html.escape(NOTE)}</p>
<p class="note" id="latency-note">{html.escape(latency_note(study))}</p>
<p id="counts">{len(study.trials)} trials ({html.escape(counts)});
by status: {_status_counts(study.trials)};
{len(analysis.eligible)} finished, feasible, full-fidelity trials;
{len(analysis.front)} on the Pareto front.</p>
<p id="hypervolume">Hypervolume {analysis.hypervolume:.6g} (accuracy x ms) with reference point
accuracy {reference.val_acc:.4f}, latency {reference.latency_ms:.4f} ms
({html.escape(reference.rule)}).</p>
<ul id="presets">{dominated}</ul>
{baselines_block}
{fidelity_text}
{plots}
<p id="notation">{NOTATION}</p>
<h2>Pareto configurations</h2>
{_front_table(analysis.front)}
<h2>All trials</h2>
<p>Every trial of the study, whatever its status; click a column header to sort.</p>
<div class="wide">{_all_trials_table(study.trials)}</div>
<h2>Study settings</h2>
{_settings_block(study)}
<script>{_SORT_SCRIPT}</script>
</body></html>
"""


def write_report(
    study_dir: str | Path, reference: Reference | None = None, *, png: str | Path | None = None
) -> Path:
    """Write report.html and pareto.json into the study directory, and with ``png`` the
    trade-off plot as a PNG there; returns the report."""
    try:
        study = load_study(study_dir)
    except StudyError as error:
        raise UserError(str(error)) from None
    analysis = analyse(study, reference)
    root = Path(study_dir)
    try:
        pareto = json.dumps(analysis.to_dict(), indent=2, allow_nan=False)  # strict JSON
        atomic_write_text(root / "pareto.json", pareto + "\n")
        report = atomic_write_text(root / "report.html", render(analysis))
    except OSError as error:
        raise UserError(f"cannot write the report into {root}: {error.strerror}") from None
    if png is not None:
        write_png(analysis, Path(png))
    return report


def write_png(analysis: Analysis, path: Path) -> Path:
    """Write the trade-off plot to ``path`` as a PNG with plotly's image export (kaleido
    driving a local Chrome or Chromium); UserError with one line when it cannot."""
    figure = _tradeoff(analysis)
    written = "report.html and pareto.json are written"
    if figure is None:
        raise UserError(
            f"no finished, feasible trials yet: no trade-off plot to export ({written})"
        )
    height = int(figure.layout.height)
    quiet = logging.root.manager.disable
    logging.disable(logging.ERROR)  # choreographer logs its browser's end on the root logger
    try:
        image = figure.to_image(format="png", width=PNG_WIDTH, height=height, scale=PNG_SCALE)
    except Exception as error:  # kaleido and the browser under it fail in many ways
        raise UserError(f"{_export_failure(error)} ({written})") from None
    finally:
        logging.disable(quiet)
    try:
        return atomic_write(path, lambda temp: temp.write_bytes(image))
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror} ({written})") from None


def _export_failure(error: BaseException) -> str:
    """One line on why the PNG export failed: no browser found, or the error's first line."""
    from kaleido.errors import ChromeNotFoundError  # plotly imports kaleido only to export

    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ChromeNotFoundError):
        cause = cause.__cause__ or cause.__context__
    where = os.environ.get("BROWSER_PATH")
    if cause is not None:
        looked = f"BROWSER_PATH={where} is not one" if where else "none on PATH or in /usr/bin"
        return (
            f"the PNG export needs Chrome or Chromium and found none ({looked}): install it "
            "(Debian: apt-get install chromium) or set BROWSER_PATH to its executable"
        )
    first = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    lines = first.strip().splitlines()
    return (
        f"the PNG export failed: {type(error).__name__}"
        + (f": {lines[0]}" if lines else "")
        + (f" (BROWSER_PATH={where})" if where else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", help="a directory written by search.run")
    parser.add_argument(
        "--reference",
        nargs=2,
        type=finite_float,
        metavar=("ACC", "MS"),
        help="hypervolume reference point, for comparing studies on one footing (default: "
        "the published presets' nadir in the study: lowest accuracy, highest latency)",
    )
    parser.add_argument(
        "--png",
        nargs="?",
        const="",
        metavar="PATH",
        help=f"also write the trade-off plot as a PNG (default: <study-dir>/{DEFAULT_PNG}); "
        "needs Chrome or Chromium (found on PATH, at /usr/bin/chromium, or as $BROWSER_PATH)",
    )
    args = parser.parse_args(argv)
    reference = (
        Reference(args.reference[0], args.reference[1], "given with --reference")
        if (args.reference)
        else None
    )
    png = None if args.png is None else Path(args.png or Path(args.study_dir) / DEFAULT_PNG)
    path = write_report(args.study_dir, reference, png=png)
    print(f"report: {path}")
    manifest = schema.read_manifest(Path(args.study_dir)) or {}
    if simulation_note(manifest.get("settings", {})) is not None:
        print("a simulated study (search.run --simulate): its objectives come from a surrogate")
    if png is not None:
        print(f"trade-off plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
