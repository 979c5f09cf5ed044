"""``python -m threshnet.profile``: parameters, MACs/FLOPs, memory and latency of a config.

python -m threshnet.profile --preset threshnet79 --input-size 224
python -m threshnet.profile --config runs/x/configs/trial-0007.json --latency --json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from threshnet.cli import (
    ArgumentParser,
    UserError,
    load_config_or_preset,
    non_negative_int,
    positive_int,
    resolve_device,
    run_cli,
)
from threshnet.config import ThreshNetConfig
from threshnet.costs import static_costs
from threshnet.latency import DTYPES, LatencySettings, measure_latency
from threshnet.model import build_model, describe_stages
from threshnet.presets import PRESETS, PUBLISHED

PROG = "threshnet.profile"


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", choices=sorted(PRESETS), help="a published model")
    source.add_argument("--config", metavar="FILE.json", help="a config written by save/export")
    parser.add_argument(
        "--input-size", type=positive_int, default=32, help="square input side (32)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (latency only)")
    parser.add_argument("--latency", action="store_true", help="also time inference")
    timing = LatencySettings()  # the defaults
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=timing.batch_size,
        help="latency batch (%(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        default=timing.warmup,
        help="untimed passes (%(default)s)",
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=timing.repeats, help="timed passes (%(default)s)"
    )
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: torch's)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default=timing.dtype, help="of the timed model"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def profile_report(
    config: ThreshNetConfig,
    *,
    name: str,
    input_size: int,
    latency_device: str | None = None,
    latency_settings: LatencySettings | None = None,
) -> dict[str, Any]:
    """Everything the CLI prints, as one JSON-ready dict."""
    try:
        costs = static_costs(config, input_size)
    except ValueError as error:
        raise UserError(str(error)) from None
    report: dict[str, Any] = {
        "name": name,
        "threshold": config.threshold,
        "depth": config.depth,
        **costs.to_dict(),
        "stages": [vars(summary) for summary in describe_stages(config, input_size)],
        "config": config.to_dict(),
    }
    if name in PUBLISHED:
        report["published"] = vars(PUBLISHED[name])
    if latency_device is not None:
        try:
            latency = measure_latency(
                build_model(config),
                input_size=input_size,
                device=latency_device,
                settings=latency_settings,
            )
        except ValueError as error:
            raise UserError(str(error)) from None
        report["latency"] = latency.to_dict()
    return report


def _giga(value: float) -> str:
    return f"{value / 1e9:.4f} G"


def format_report(report: dict[str, Any]) -> str:
    """A readable table of ``profile_report``'s output."""
    size = report["input_size"]
    lines = [
        f"{report['name']}: threshold {report['threshold']}, depth {report['depth']}, "
        f"{len(report['stages'])} stages, input 3x{size}x{size}",
        "",
        f"{'stage':<6}{'type':<10}{'depth':>6}{'growth':>8}{'m':>6}"
        f"{'in':>7}{'block':>7}{'trans':>7}{'pool':>6}{'size':>6}",
    ]
    for stage in report["stages"]:
        multiplier = "-" if stage["multiplier"] is None else f"{stage['multiplier']:g}"
        lines.append(
            f"{stage['index'] + 1:<6}{stage['kind']:<10}{stage['depth']:>6}{stage['growth']:>8}"
            f"{multiplier:>6}{stage['in_channels']:>7}{stage['block_channels']:>7}"
            f"{stage['out_channels']:>7}{'yes' if stage['downsample'] else 'no':>6}"
            f"{stage['feature_size']:>6}"
        )
    published = report.get("published")
    costs_comparable = published is not None and size == 224

    def theirs(key: str, unit: str) -> str | None:
        return f"{published[key]:.2f} {unit}" if costs_comparable else None

    rows = [
        ("params", f"{report['params']:,}", published and f"{published['params_m']:.2f} M"),
        ("MACs (conv+linear)", _giga(report["macs"]), None),
        ("FLOPs (= 2 x MACs)", _giga(report["flops"]), None),
        ("torchstat FLOPs", _giga(report["torchstat_flops"]), theirs("torchstat_gflops", "G")),
        ("torchstat MAdd", _giga(report["torchstat_madd"]), theirs("torchstat_gmadd", "G")),
        (
            "activation memory",
            f"{report['activation_mb']:.2f} MB",
            theirs("torchstat_memory_mb", "MB"),
        ),
    ]
    lines.append("")
    header = f"{'figure':<22}{'ours':>18}"
    if published:
        header += f"{'published (README)':>22}"
    lines.append(header)
    for label, ours, published_value in rows:
        line = f"{label:<22}{ours:>18}"
        if published:
            line += f"{published_value or '':>22}"
        lines.append(line)
    if published and not costs_comparable:
        lines.append("(published costs are torchstat at 224x224: rerun with --input-size 224)")
    lines.append(
        "(MACs/FLOPs by torch.utils.flop_counter; torchstat figures follow the rules behind "
        "the authors' README; activation memory = sum of leaf-module outputs, batch 1, fp32, "
        "MiB, torchstat's memory column)"
    )
    latency = report.get("latency")
    if latency:
        lines += [
            "",
            f"latency: {latency['median_ms']:.3f} ms median "
            f"(p10 {latency['p10_ms']:.3f}, p90 {latency['p90_ms']:.3f}, "
            f"sd {latency['stdev_ms']:.3f}), {latency['per_image_ms']:.4f} ms/image",
            f"  batch {latency['batch_size']}, {latency['repeats']} repeats after "
            f"{latency['warmup']} warm-up, {latency['device']} ({latency['device_name']}), "
            f"{latency['dtype']}, threads {latency['threads']}, "
            f"channels_last {latency['channels_last']}, torch {latency['torch_version']}",
        ]
        if published:
            lines.append(
                f"  published: {published['rtx3050_ms_per_image']} ms/image on an RTX 3050 "
                "(batch and precision unstated)"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    name, config = load_config_or_preset(preset=args.preset, config_path=args.config)
    device = str(resolve_device(args.device))
    settings = None
    if args.latency:
        # each latency flag's destination is the LatencySettings field of that name
        settings = LatencySettings(
            **{field.name: getattr(args, field.name) for field in fields(LatencySettings)}
        )
    report = profile_report(
        config,
        name=name,
        input_size=args.input_size,
        latency_device=device if args.latency else None,
        latency_settings=settings,
    )
    print(json.dumps(report) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main, None))
