"""Plotly figures of a study: the trade-off, hypervolume history, parameters."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from threshnet.presets import PUBLISHED_PRESETS

# One colour per published preset, in their order (plotly's red, purple, brown, pink, ...).
_PRESET_PALETTE = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
PRESET_COLOURS = dict(zip(PUBLISHED_PRESETS, _PRESET_PALETTE, strict=False))


def describe_config(config_json: str) -> str:
    """A one-line architecture summary, e.g. 'T2 | D6g32>128 D8g32>192 H16k40m1.7>480'
    (the notation the report explains, in its paragraph "notation")."""
    if not config_json:
        return ""
    config = json.loads(config_json)
    parts = []
    for index, stage in enumerate(config["stages"]):
        if index < config["threshold"]:
            parts.append(f"D{stage['depth']}g{stage['growth']}>{stage['transition']}")
        else:
            parts.append(
                f"H{stage['depth']}k{stage['growth']}m{stage['multiplier']:g}>{stage['transition']}"
            )
    return f"T{config['threshold']} | " + " ".join(parts)


def _hover(frame: pd.DataFrame) -> list[str]:
    return [
        f"trial {row.number}{' (' + row.preset + ')' if row.preset else ''}<br>"
        f"val acc {row.val_acc:.4f}, latency {row.latency_ms:.3f} ms<br>"
        f"{int(row.params):,} params, {int(row.macs) / 1e6:.1f} M MACs<br>"
        f"{describe_config(row.config_json)}"
        for row in frame.itertuples()
    ]


def _latency_bars(eligible: pd.DataFrame) -> go.Scatter:
    """A bar per trial from its p10 to its p90 latency of the search's timing passes, as
    error bars on points not drawn: one legend entry shows or hides them all. None where
    either is missing, nor where the latency shown was re-measured after the search (the
    search's spread belongs to another measurement, which the point no longer shows). On
    a study's latency scale, the passes' raw spread is scaled as the latency was."""
    searched = eligible[~eligible["latency_remeasured"].astype(bool)]
    measured = searched.dropna(subset=["latency_p10_ms", "latency_p90_ms"])
    latency = measured["latency_ms"].astype(float)
    raw = measured.get("latency_raw_ms", pd.Series(index=measured.index, dtype=float))
    scale = (latency / raw.astype(float)).fillna(1.0)
    return go.Scatter(
        x=latency,
        y=measured["val_acc"],
        mode="none",
        name="latency p10-p90 (search)",
        customdata=measured["number"].tolist(),
        error_x={
            "type": "data",
            "symmetric": False,
            "array": (measured["latency_p90_ms"].astype(float) * scale - latency).tolist(),
            "arrayminus": (latency - measured["latency_p10_ms"].astype(float) * scale).tolist(),
            "color": "#7f8c99",
            "thickness": 1,
            "width": 3,
        },
        hoverinfo="skip",
    )


def _baseline_markers(baselines: pd.DataFrame) -> go.Scatter:
    """Other families' networks (--baselines): labelled diamonds, not trials."""
    return go.Scatter(
        x=baselines["latency_ms"],
        y=baselines["val_acc"],
        mode="markers+text",
        name="baselines (not searched)",
        text=baselines["name"].tolist(),
        textposition="bottom center",
        marker={"symbol": "diamond", "size": 12, "color": "#2ca02c", "line": {"width": 1}},
        hovertext=[
            f"{row.name} ({row.source})<br>val acc {row.val_acc:.4f}, latency "
            f"{row.latency_ms:.3f} ms<br>{int(row.params):,} params"
            for row in baselines.itertuples()
        ],
        hoverinfo="text",
    )


def tradeoff_figure(
    eligible: pd.DataFrame,
    front: pd.DataFrame,
    latency_label: str,
    baselines: pd.DataFrame | None = None,
) -> go.Figure:
    """All eligible trials, the front highlighted, connected and labelled with its trial
    numbers, presets labelled, and each point's p10-p90 latency in the search as a bar.

    ``eligible`` and ``front`` are frames of :func:`studies.load.eligible_trials`. Traces:
    the latency bars, "trials" (neither on the front nor a preset), "Pareto front"
    (connected as a staircase), and one labelled star per published preset (drawn over
    the front when a preset is on it).
    """
    others = eligible[~eligible["number"].isin(front["number"]) & (eligible["preset"] == "")]
    figure = go.Figure(_latency_bars(eligible))
    figure.add_trace(
        go.Scatter(
            x=others["latency_ms"],
            y=others["val_acc"],
            mode="markers",
            name="trials",
            marker={"color": "#9aa5b1", "size": 8},
            hovertext=_hover(others),
            hoverinfo="text",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=front["latency_ms"],
            y=front["val_acc"],
            mode="lines+markers+text",
            name="Pareto front",
            line={"shape": "hv", "color": "#1f77b4", "width": 2},
            marker={"color": "#1f77b4", "size": 10},
            text=[str(number) for number in front["number"]],
            textposition="bottom right",
            textfont={"color": "#1f77b4"},
            hovertext=_hover(front),
            hoverinfo="text",
        )
    )
    presets = eligible[eligible["preset"] != ""]
    for row in presets.itertuples():
        figure.add_trace(
            go.Scatter(
                x=[row.latency_ms],
                y=[row.val_acc],
                mode="markers+text",
                name=row.preset,
                text=[row.preset],
                textposition="top center",
                marker={
                    "symbol": "star",
                    "size": 16,
                    "color": PRESET_COLOURS.get(row.preset, "#000"),
                    "line": {"width": 1, "color": "#222"},
                },
                hovertext=_hover(presets[presets["number"] == row.number]),
                hoverinfo="text",
            )
        )
    if baselines is not None and not baselines.empty:
        figure.add_trace(_baseline_markers(baselines))
    figure.update_layout(
        title="Proxy validation accuracy vs latency",
        xaxis_title=f"{latency_label}<br>bars: p10-p90 of the search's timing passes "
        "(none on re-measured points)",
        yaxis_title="proxy validation accuracy",
        template="plotly_white",
        height=560,
        showlegend=True,  # plotly hides it when one trace has points: name the front anyway
        legend={"orientation": "h", "y": -0.22},
    )
    return figure


def hypervolume_figure(history: pd.DataFrame) -> go.Figure:
    figure = go.Figure(
        go.Scatter(
            x=history["number"],
            y=history["hypervolume"],
            mode="lines+markers",
            name="hypervolume",
            line={"shape": "hv"},
        )
    )
    figure.update_layout(
        title="Hypervolume of the eligible trials so far",
        xaxis_title="trial number",
        yaxis_title="hypervolume (accuracy x ms)",
        template="plotly_white",
        height=380,
    )
    return figure


def parameters_figure(eligible: pd.DataFrame, param_columns: list[str]) -> go.Figure:
    """Parallel coordinates of the always-present parameters and the outcomes."""
    columns = [c for c in param_columns if eligible[c].notna().all()] + [
        "params",
        "latency_ms",
        "val_acc",
    ]
    dimensions = [
        {"label": column, "values": eligible[column].astype(float).tolist()} for column in columns
    ]
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": eligible["val_acc"].astype(float).tolist(),
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": "val acc"},
            },
            dimensions=dimensions,
        )
    )
    figure.update_layout(
        title="Parameters of the eligible trials", height=460, template="plotly_white"
    )
    return figure


def fidelity_scatter(configs: pd.DataFrame, proxy: str, long: str, title: str) -> go.Figure:
    """The search's proxy accuracy against the long budget's, one point per config
    (presets labelled), with the least-squares line for the eye."""
    labels = [
        f"trial {row['number']}{' (' + row['preset'] + ')' if row['preset'] else ''}<br>"
        f"val acc {row['search']:.4f} by the proxy ({proxy}), {row[long]:.4f} at {long}"
        for _, row in configs.iterrows()
    ]
    figure = go.Figure(
        go.Scatter(
            x=configs["search"],
            y=configs[long],
            mode="markers+text",
            name="configs",
            text=[row.preset or "" for row in configs.itertuples()],
            textposition="top center",
            marker={
                "size": 11,
                "color": [PRESET_COLOURS.get(p, "#1f77b4") for p in configs["preset"]],
            },
            hovertext=labels,
            hoverinfo="text",
        )
    )
    figure.update_layout(
        title=title,
        xaxis_title=f"validation accuracy by the proxy ({proxy})",
        yaxis_title=f"validation accuracy at the long budget ({long})",
        template="plotly_white",
        height=520,
    )
    return figure


def ladder_figure(rungs: list[dict[str, Any]], ceiling: float | None, long: str) -> go.Figure:
    """Kendall's tau against the long budget over seconds per config, one point per rung
    with its 95 % interval, and the seed-noise ceiling as a line."""
    trained = [
        r for r in rungs if r["kendall_tau"]["value"] is not None and (r["seconds"] or 0) > 0
    ]
    figure = go.Figure()
    for kind, colour in (("search", "#d62728"), ("trained", "#1f77b4"), ("zero-cost", "#2ca02c")):
        points = [r for r in trained if r["kind"] == kind]
        if not points:
            continue
        tau = [r["kendall_tau"] for r in points]
        figure.add_trace(
            go.Scatter(
                x=[r["seconds"] for r in points],
                y=[t["value"] for t in tau],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [(t["high"] or t["value"]) - t["value"] for t in tau],
                    "arrayminus": [t["value"] - (t["low"] or t["value"]) for t in tau],
                },
                mode="markers+text",
                text=[r["rung"] for r in points],
                textposition="middle right",
                name=kind,
                marker={"size": 10, "color": colour},
            )
        )
    if ceiling is not None:
        figure.add_hline(
            y=ceiling, line_dash="dash", line_color="#888", annotation_text="seed-noise ceiling"
        )
    figure.update_layout(
        title=f"Rank agreement with the long budget ({long}) against cost",
        xaxis_title="seconds per config (log)",
        yaxis_title=f"Kendall tau vs {long}",
        xaxis_type="log",
        template="plotly_white",
        height=480,
    )
    return figure
