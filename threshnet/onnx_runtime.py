"""ONNX Runtime sessions, and getting them ready to time as the eager path times a module.

A session runs on ONNX Runtime's CPU execution provider with a given intra-op thread
count (pass the eager path's), or on its CUDA execution provider where the installed
onnxruntime offers one (the ``onnxruntime-gpu`` package), on PyTorch's current CUDA
stream, so that the CUDA events of ``threshnet.latency.time_repeats`` time it as they time
an eager pass. Idle intra-op threads do not spin: the candidate's and the reference's
sessions take turns, and one session's spinning threads would compete with the other's
run. The input is bound once, on the device (I/O binding), so a timed pass is the graph
alone, as an eager pass is.

onnxruntime is an optional dependency (``pip install -e '.[onnx]'``), imported only when
one of these functions runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from threshnet.latency import LatencySettings

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def inference_session(
    onnx_model: bytes, *, device: str | torch.device, threads: int
) -> InferenceSession:
    """An ONNX Runtime session of ``onnx_model`` (a serialised graph) on ``device`` with
    ``threads`` intra-op threads; ValueError when ``device`` is a GPU and onnxruntime here
    has no CUDA execution provider."""
    import onnxruntime as ort

    device = torch.device(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if device.type == "cpu":
        providers: list[str | tuple[str, dict[str, object]]] = [CPU_PROVIDER]
    elif device.type == "cuda":
        if CUDA_PROVIDER not in ort.get_available_providers():
            raise ValueError(
                f"onnxruntime {ort.__version__} here has no {CUDA_PROVIDER}: install "
                "onnxruntime-gpu to time ONNX Runtime on a GPU, or time on the CPU"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        stream = torch.cuda.current_stream(index).cuda_stream
        providers = [(CUDA_PROVIDER, {"device_id": index, "user_compute_stream": str(stream)})]
    else:
        raise ValueError(f"ONNX Runtime times on cpu or cuda, not {device}")
    return ort.InferenceSession(onnx_model, options, providers=providers)


class BoundPass:
    """One pass of a session on the input bound to it; called like a module (the input
    given is the bound one, already in place)."""

    def __init__(self, session: InferenceSession, example: torch.Tensor) -> None:
        device = example.device
        index = device.index or 0
        self.session, self.example = session, example  # the binding points into example
        self.binding = session.io_binding()
        self.binding.bind_input(
            session.get_inputs()[0].name,
            device.type,
            index,
            np.float32,
            list(example.shape),
            example.data_ptr(),
        )
        self.binding.bind_output(session.get_outputs()[0].name, device.type, index)

    def __call__(self, example: torch.Tensor) -> None:
        self.session.run_with_iobinding(self.binding)


def prepare_sessions(
    sessions: Sequence[object],
    input_size: int,
    device: str | torch.device,
    settings: LatencySettings,
) -> tuple[list[BoundPass], torch.Tensor, int]:
    """Each session as a pass on one random input on ``device``, that input, and the
    sessions' intra-op thread count; ValueError for what ONNX Runtime cannot time as asked
    (TypeError when not all are sessions: both networks are timed in one backend)."""
    import onnxruntime as ort

    settings.validate()
    if not all(isinstance(session, ort.InferenceSession) for session in sessions):
        raise TypeError("time the candidate and the reference in the same backend")
    if settings.batch_size != 1 or settings.dtype != "float32" or settings.channels_last:
        raise ValueError(
            "ONNX Runtime times the exported graph as it is: batch 1, float32, "
            f"contiguous (asked: batch {settings.batch_size}, {settings.dtype}, "
            f"channels_last {settings.channels_last})"
        )
    device = torch.device(device)
    wanted = CUDA_PROVIDER if device.type == "cuda" else CPU_PROVIDER
    shape = [1, 3, input_size, input_size]
    threads = set()
    for session in sessions:
        if session.get_providers()[0] != wanted:
            raise ValueError(f"a session runs on {session.get_providers()[0]}, not on {device}")
        if session.get_inputs()[0].shape != shape:
            raise ValueError(f"a session takes input {session.get_inputs()[0].shape}, not {shape}")
        threads.add(session.get_session_options().intra_op_num_threads)
    if len(threads) != 1 or (settings.threads is not None and threads != {settings.threads}):
        raise ValueError(
            f"the sessions run {sorted(threads)} intra-op threads; the settings ask for "
            f"{settings.threads}"
        )
    example = torch.randn(shape, device=device)
    return [BoundPass(session, example) for session in sessions], example, threads.pop()
