"""Checks before Ray starts: settings under which every trial would fail are refused.

A study that spends its budget on trials that all fail (a NaN from an infinite weight
decay, a latency that cannot be measured, a space whose networks do not fit the input)
is worse than a refusal: this finds such settings in well under a second, by closed
forms and builds on the meta device (no forward pass: the feature map's size at each
stage is ``ThreshNetConfig.feature_sizes``, which tests/test_model.py checks against the
built networks; a meta-device forward pass cost about 0.9 s a network on 2 cores).
"""

from __future__ import annotations

import torch

from search.setup.settings import StudySettings
from space import extreme_configs, preset_points
from threshnet.cli import UserError
from threshnet.config import ThreshNetConfig
from threshnet.latency import LatencySettings
from threshnet.model import build_model
from threshnet.onnx_export import INSTALL_HINT, missing_packages
from threshnet.onnx_runtime import CUDA_PROVIDER
from threshnet.steady_latency import BACKENDS


def _builds(config: ThreshNetConfig, input_size: int) -> None:
    """Check that ``config`` fits ``input_size`` and build it on the meta device."""
    config.validate(input_size=input_size)
    with torch.device("meta"):
        build_model(config)


def _networks(settings: StudySettings) -> list[tuple[str, ThreshNetConfig]]:
    """The space's extreme configs, and the presets the study queues."""
    try:
        networks = [
            (f"the space's {name}", config) for name, config in extreme_configs(settings.space)
        ]
    except ValueError as error:
        raise UserError(f"the search space cannot be searched: {error}") from None
    if settings.enqueue_presets:
        points, _ = preset_points(settings.space)  # the others are not queued
        networks += [(f"preset {name}", config) for name, config, _ in points]
    return networks


def _check_backend(backend: str, device: str) -> None:
    """UserError when the latency backend is unknown or not installed here."""
    if backend not in BACKENDS:
        raise UserError(f"--latency-backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "onnxruntime":
        return
    missing = missing_packages()
    if missing:
        raise UserError(f"--latency-backend onnxruntime needs {', '.join(missing)}: {INSTALL_HINT}")
    import onnxruntime

    if device == "cuda" and CUDA_PROVIDER not in onnxruntime.get_available_providers():
        raise UserError(
            "--latency-backend onnxruntime --latency-device cuda needs onnxruntime-gpu (this "
            f"onnxruntime has no {CUDA_PROVIDER})"
        )


def check_settings(settings: StudySettings, *, networks: bool = True) -> None:
    """Raise UserError (one line) when the settings would make every trial fail.
    ``networks``: also check and build the space's extreme configs and the queued presets
    (a resumed study's were checked when it was made, and a resume cannot change them)."""
    try:
        settings.train.validate()
    except ValueError as error:
        raise UserError(str(error)) from None
    if settings.scheduler == "mo-asha" and len(settings.rungs) < 2:
        raise UserError(
            f"--scheduler mo-asha stops trials at epoch rungs below the full budget; with "
            f"--epochs {settings.train.epochs} there is none: give --epochs 2 or more"
        )
    protocol = settings.latency
    _check_backend(protocol.backend, protocol.device)
    try:
        LatencySettings(
            batch_size=protocol.batch_size or 1, warmup=protocol.warmup, repeats=protocol.repeats
        ).validate()
    except ValueError as error:
        raise UserError(f"{error} (--latency-*)") from None
    input_sizes = {
        "--input-size": settings.train.input_size,
        "--latency-input-size": protocol.input_size or settings.train.input_size,
    }
    if not networks:
        return
    flag_of_size = {size: flag for flag, size in reversed(input_sizes.items())}
    for name, config in _networks(settings):
        for size, flag in flag_of_size.items():  # each size once (they are often the same)
            try:
                _builds(config, size)
            except (ValueError, RuntimeError) as error:
                raise UserError(
                    f"{name} cannot run at {flag} {size}: {str(error).splitlines()[0]}"
                ) from None
