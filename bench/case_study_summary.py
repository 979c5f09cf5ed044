"""The case study's summary: ``summary.json`` and ``summary.md`` (and the ladder's plot as
``ladder.png`` where a Chromium is found), recomputed from the committed result files
alone: the study directory (trials.csv, remeasured.csv, fidelity.csv, manifest) and the
full-training runs' ``metrics.csv``/``summary.json``.

    python bench/case_study_summary.py bench/results/case-study-cpu

Once the search's proxy is ranked against the long budget over enough configs, its
figures also go to ``studies/measured_fidelity.json``: what a study's report says about
the same proxy when the study did not check its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: the project's packages from the checkout
    sys.path.insert(0, str(REPO))

from search.setup.settings import StudySettings  # noqa: E402
from search.tasks.retrain import budget_settings  # noqa: E402
from studies.fidelity import (  # noqa: E402
    ADVICE_MIN_CONFIGS,
    SEARCH,
    Ladder,
    RungAgreement,
    ladder_summary,
    parse_budget,
)
from studies.fidelity_stats import correlation, kendall  # noqa: E402
from studies.figures import ladder_figure  # noqa: E402
from studies.load import Study, eligible_trials, load_study  # noqa: E402
from studies.measured_fidelity import (  # noqa: E402
    BUNDLED,
    Measurement,
    data_kind,
    proxy_signature,
    record_measurements,
)
from studies.pareto import pareto_mask  # noqa: E402
from threshnet.config import ThreshNetConfig  # noqa: E402
from threshnet.costs import architecture_costs  # noqa: E402
from threshnet.presets import PUBLISHED, get_preset  # noqa: E402

FULL_MODELS = ("winner", "threshnet79", "threshnet28")
OUT_PREFIX = "case-study-"  # bench/results/case-study-<scale>


def _full_row(out: Path, name: str, latency: dict[str, float]) -> dict[str, Any] | None:
    """One full-training run's figures, or None before its first epoch."""
    run = out / "full" / name
    metrics_path = run / "metrics.csv"
    if not metrics_path.exists():
        return None
    metrics = pd.read_csv(metrics_path)
    config = (
        ThreshNetConfig.from_json((out / "full" / "winner-config.json").read_text())
        if name == "winner"
        else get_preset(name)
    )
    costs = architecture_costs(config, 32)
    final = metrics.iloc[-1]
    published = PUBLISHED.get(name)
    summary_path = run / "summary.json"
    planned = json.loads(summary_path.read_text())["epochs"] if summary_path.exists() else None
    return {
        "model": name,
        "epochs_done": int(final["epoch"]),
        "epochs_planned": planned,
        "final_test_error_pct": round(100 * (1 - float(final["test_acc"])), 2),
        "best_test_error_pct": round(100 * (1 - float(metrics["test_acc"].max())), 2),
        "train_hours": round(float(metrics["seconds"].sum()) / 3600, 2),
        "params_m": round(costs.params / 1e6, 2),
        "macs_m": round(costs.macs / 1e6, 1),
        "latency_ms": latency.get(name),
        "paper_error_pct_200_epochs": None if published is None else published.cifar10_error_pct,
        "paper_rtx3050_ms": None if published is None else published.rtx3050_ms_per_image,
    }


def against_proxy(study_dir: Path) -> list[dict[str, Any]]:
    """Each trained rung's and the proxy's second seed's Kendall tau against the search's
    own proxy accuracies (not the long budget): the seed-noise ceiling, and what a
    1-epoch rung tells about the full proxy (what mo-asha can gain). Available before
    the long budget is."""
    study = load_study(study_dir)
    table = study.fidelity
    if table is None:
        return []
    trials = eligible_trials(study).set_index("number")
    ok = table[(table["status"] == "ok") & (table["kind"] == "trained")].copy()
    ok["offset"] = ok["seed"] - ok["number"].map(trials["seed"])
    rows = []
    for (rung, offset), group in ok.groupby(["rung", "offset"]):
        group = group.drop_duplicates("number", keep="last").set_index("number")
        both = group.index.intersection(trials.index)
        x = trials.loc[both, "val_acc"].to_numpy(dtype=float)
        y = group.loc[both, "val_acc"].to_numpy(dtype=float)
        tau = correlation(x, y, kendall, seed=0)
        rows.append(
            {
                "rung": rung if offset == 0 else f"{rung} seed+{int(offset)}",
                "configs": len(both),
                "kendall_tau_vs_proxy": tau.to_dict(),
                "text": tau.text(),
            }
        )
    return rows


def _latencies(out: Path, trials: pd.DataFrame) -> dict[str, float]:
    """The study's latency (re-measured where the final pass ran) of the three models."""
    by_preset = trials[trials["preset"] != ""].set_index("preset")["latency_ms"]
    latency = {name: float(value) for name, value in by_preset.items()}
    winner_file = out / "full" / "winner.json"
    if winner_file.exists():
        number = json.loads(winner_file.read_text())["number"]
        hit = trials[trials["number"] == number]["latency_ms"]
        if not hit.empty:
            latency["winner"] = float(hit.iloc[0])
    return latency


def _markdown(summary: dict[str, Any], ladder: Ladder | None) -> str:
    lines = [f"# Case study: {summary['scale']} scale", ""]
    study = summary["study"]
    lines += [
        f"Study: {study['finished_trials']} finished trials, proxy {study['proxy']} "
        f"({study['proxy_train_images']:,} images x {study['proxy_epochs']} epochs, "
        f"{study['validation_images']:,} validation images), front {study['front_size']}.",
        "",
    ]
    if summary["against_proxy"]:
        lines += [
            "## Rungs against the search's proxy (before the long budget)",
            "",
            "| rung | configs | Kendall tau vs the proxy [95 % CI] |",
            "|---|---:|---|",
        ]
        lines += [
            f"| {r['rung']} | {r['configs']} | {r['text']} |" for r in summary["against_proxy"]
        ]
        lines.append("")
    if ladder is not None:
        lines += ["## Fidelity ladder", "", ladder.table(), "", ladder.line(), ""]
        lines += [f"Advice (issue 20's rule): {ladder.advice()}.", ""]
        lines += [f"Configs: {len(ladder.configs)}; the long budget's front: {ladder.k}.", ""]
    full = summary["full_training"]
    if full:
        lines += [
            "## Full training",
            "",
            "| model | epochs | final test error % | best-epoch test error % | train h | "
            "params M | MACs M | study latency ms | paper error % (200 ep) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in full:
            latency = "" if row["latency_ms"] is None else f"{row['latency_ms']:.2f}"
            paper = row["paper_error_pct_200_epochs"]
            lines.append(
                f"| {row['model']} | {row['epochs_done']}/{row['epochs_planned'] or '?'} | "
                f"{row['final_test_error_pct']} | {row['best_test_error_pct']} | "
                f"{row['train_hours']} | {row['params_m']} | {row['macs_m']} | {latency} | "
                f"{'' if paper is None else paper} |"
            )
        lines.append("")
    return "\n".join(lines)


def measurements(
    scale: str, study: Study, ladder: Ladder, images: int, note: str = ""
) -> list[Measurement]:
    """The shipped records, once the search's proxy is ranked over enough configs: its own
    fidelity, and that of each trained rung ranked over as many configs as the proxy
    (what a study that searched at that budget would have); the search's record names the
    record of the budget the advice picks."""
    proxy = ladder.rung(SEARCH)
    if proxy is None or proxy.configs < ADVICE_MIN_CONFIGS or not images:
        return []
    settings = study.settings
    validation = settings.get("max_val_images") or settings.get("val_size")
    kind = data_kind(settings.get("data_dir"))
    data_words = "the bundled CIFAR-10 subset" if kind == BUNDLED else kind
    advised = ladder.advised()
    rungs = [
        row
        for row in ladder.rungs
        if row.kind == "trained" and " seed+" not in row.rung and row.configs == proxy.configs
    ]

    def record(
        row: RungAgreement, name: str, epochs: int, seen: float, **fields: Any
    ) -> Measurement:
        return Measurement(
            name=name,
            proxy_text=(
                f"{epochs} epoch{'s' if epochs != 1 else ''} on {seen:,.0f} training images of "
                f"{data_words} "
                f"({validation:,} validation images)"
            ),
            long=f"{ladder.long} ({ladder.long_images:,.0f} training images a config)",
            configs=row.configs,
            tau=(row.kendall.value, row.kendall.low, row.kendall.high),
            advice=f"The case study's advice: {ladder.advice()}.",
            source=f"bench/results/{OUT_PREFIX}{scale}, BENCHMARKS.md 'Proxy fidelity'",
            note=note,
            **fields,
        )

    def name_of(row: RungAgreement) -> str:
        return scale if row.rung == SEARCH else f"{scale} {row.rung}"

    ceiling = ladder.ceiling
    searched = record(
        proxy,
        scale,
        study.proxy_epochs,
        images,
        proxy=proxy_signature(settings),
        ceiling=None if pd.isna(ceiling.value) else (ceiling.value, ceiling.low, ceiling.high),
        advised=name_of(advised[0])
        if advised and advised[0].rung in {proxy.rung, *(row.rung for row in rungs)}
        else "",
    )
    searched_settings = StudySettings.from_dict(settings)
    others = []
    for row in rungs:
        budget = parse_budget(row.rung)
        others.append(
            record(
                row,
                name_of(row),
                budget.epochs,
                row.images / budget.epochs,
                proxy=proxy_signature(
                    budget_settings(searched_settings, budget.epochs, budget.images).to_dict()
                ),
                ceiling=None,
                rung=row.rung,
            )
        )
    return [searched, *others]


def write_summary(out: Path) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and ``ladder.png`` (if it renders) in ``out``."""
    study = load_study(out / "study")
    trials = eligible_trials(study)
    ladder = ladder_summary(study)
    settings = study.settings
    scale_file = json.loads((out / "scale.json").read_text())
    scale = scale_file.get("scale", out.name)
    latency = _latencies(out, trials)
    full = [row for name in FULL_MODELS if (row := _full_row(out, name, latency)) is not None]
    proxy_images = None
    if ladder is not None:
        table = study.fidelity
        proxy_rows = table[(table["rung"] == f"{study.proxy_epochs}xproxy")]
        proxy_images = int(proxy_rows["train_images"].dropna().iloc[0]) if len(proxy_rows) else None
    summary = {
        "scale": scale,
        "study": {
            "finished_trials": len(trials),
            "proxy": f"{study.proxy_epochs}xproxy",
            "proxy_epochs": study.proxy_epochs,
            "proxy_train_images": proxy_images or settings.get("max_train_images") or 0,
            "validation_images": settings.get("max_val_images") or settings.get("val_size"),
            "front_size": int(pareto_mask(trials).sum()),
        },
        "fidelity": None if ladder is None else ladder.to_dict(),
        "against_proxy": against_proxy(out / "study"),
        "winner": json.loads((out / "full" / "winner.json").read_text())
        if (out / "full" / "winner.json").exists()
        else None,
        "full_training": full,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(_markdown(summary, ladder))
    if ladder is not None:
        data = ladder.to_dict()
        figure = ladder_figure(data["rungs"], data["seed_noise_ceiling"]["value"], ladder.long)
        try:
            figure.write_image(out / "ladder.png", width=900, height=500)
        except Exception as error:  # no Chromium here: the tables still stand
            print(f"ladder.png not written: {str(error).splitlines()[0]}", file=sys.stderr)
    measured = (
        []
        if ladder is None
        else measurements(scale, study, ladder, proxy_images or 0, scale_file.get("note", ""))
    )
    if measured:
        record_measurements(measured, replacing=scale)
    print(_markdown(summary, ladder))
    return summary


if __name__ == "__main__":
    write_summary(Path(sys.argv[1]).resolve())
