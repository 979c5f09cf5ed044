"""A network as an ONNX graph at batch 1, checked against PyTorch in ONNX Runtime.

``torch.onnx.export`` (its torch.export-based exporter, which needs onnxscript) writes a
graph that takes ``image``, float32 of shape (1, 3, size, size), and gives ``logits``.
Every export is checked before it is returned: ONNX Runtime's output (CPU) on a random
input must match PyTorch's in eval mode within ``TOLERANCE`` times the larger of 1 and
the largest absolute logit; ``OnnxExportError`` says by how much it differs otherwise.

onnx, onnxruntime and onnxscript are the optional ``[onnx]`` extra
(``pip install -e '.[onnx]'``), imported only when a function here runs.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import nn

from threshnet.fileio import atomic_write
from threshnet.onnx_runtime import inference_session

EXTRA_PACKAGES = ("onnxruntime", "onnx", "onnxscript")
INSTALL_HINT = "pip install -e '.[onnx]'"
TOLERANCE = 1e-4  # of max(1, largest |logit|): float32 kernels differ by far less
INPUT_NAME, OUTPUT_NAME = "image", "logits"


class OnnxExportError(ValueError):
    """The exporter failed, or ONNX Runtime's output differs from PyTorch's."""


def missing_packages() -> list[str]:
    """The packages of the ``[onnx]`` extra that cannot be imported here."""
    missing = []
    for name in EXTRA_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def export_onnx(model: nn.Module, *, input_size: int, seed: int = 0) -> bytes:
    """``model`` as a serialised ONNX graph at batch 1 and ``input_size``, checked (see the
    module docstring); the model is left on the CPU in eval mode."""
    model = model.to(device="cpu", dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(1, 3, input_size, input_size, generator=generator)
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
        )
    except torch.onnx.OnnxExporterError as error:
        raise OnnxExportError(f"torch.onnx.export failed: {_first_line(error)}") from None
    onnx_model = program.model_proto.SerializeToString()
    check_outputs(model, onnx_model, example)
    return onnx_model


def check_outputs(model: nn.Module, onnx_model: bytes, example: torch.Tensor) -> float:
    """The largest absolute difference between ``model``'s output on ``example`` (CPU, eval
    mode) and ONNX Runtime's; OnnxExportError beyond the tolerance."""
    session = inference_session(onnx_model, device="cpu", threads=1)
    with torch.no_grad():
        expected = model.eval()(example).numpy()
    (got,) = session.run(None, {INPUT_NAME: example.numpy()})
    if got.shape != expected.shape:
        raise OnnxExportError(
            f"ONNX Runtime's output has shape {got.shape}, PyTorch's {expected.shape}"
        )
    difference = float(abs(got - expected).max())
    allowed = TOLERANCE * max(1.0, float(abs(expected).max()))
    if not difference <= allowed:  # NaN fails too
        raise OnnxExportError(
            f"ONNX Runtime's output differs from PyTorch's by up to {difference:.3g} "
            f"(allowed: {allowed:.3g})"
        )
    return difference


def save_onnx(onnx_model: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``onnx_model`` to ``path`` atomically (one self-contained .onnx file)."""
    return atomic_write(path, lambda temp: temp.write_bytes(onnx_model))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
