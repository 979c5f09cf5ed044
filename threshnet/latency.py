"""Inference latency: eval mode, inference_mode, warm-up, synchronised timing, many repeats.

On CUDA each repeat is timed with a pair of CUDA events around one forward pass; on CPU
with ``time.perf_counter`` under an explicit intra-op thread count. The result records
the settings it was measured under, so two numbers are only compared when they match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

from threshnet.costs import output_bytes

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# warm_up_until_steady: the last 10 passes within 5 % of their median, at most 500 passes
WARMUP_WINDOW = 10
WARMUP_SPREAD = 0.05
WARMUP_MAX_PASSES = 500


@dataclass(frozen=True)
class LatencySettings:
    """How to time a forward pass."""

    batch_size: int = 1
    warmup: int = 10
    repeats: int = 50
    threads: int | None = None  # CPU intra-op threads; None keeps torch's current setting
    channels_last: bool = False
    dtype: str = "float32"

    def validate(self) -> None:
        """Raise ValueError on settings that cannot be measured."""
        for name, value, low in (
            ("batch_size", self.batch_size, 1),
            ("warmup", self.warmup, 0),
            ("repeats", self.repeats, 3),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"latency {name} must be an integer >= {low}, got {value!r}")
        cpus = os.cpu_count() or 1
        if self.threads is not None and (
            not isinstance(self.threads, int) or not 1 <= self.threads <= cpus
        ):
            raise ValueError(
                f"latency threads must be an integer in [1, {cpus}] (this machine's CPUs), "
                f"got {self.threads!r}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(
                f"latency dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )


@dataclass(frozen=True)
class LatencyResult:
    """Milliseconds per forward pass (and per image), with what they were measured on."""

    median_ms: float
    mean_ms: float
    stdev_ms: float
    min_ms: float
    p10_ms: float
    p90_ms: float
    per_image_ms: float
    batch_size: int
    input_size: int
    repeats: int
    warmup: int
    device: str
    device_name: str
    dtype: str
    threads: int
    channels_last: bool
    torch_version: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def device_name(device: torch.device) -> str:
    """A human-readable name of ``device`` (GPU model, or the CPU's)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "cpu"


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` intra-op CPU threads (None: as is); yields the count in force."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def cpu_clock(threads: int) -> Callable[[], float]:
    """The CPU-time clock of a CPU pass on ``threads`` intra-op threads: the calling
    thread's (one thread computes it all), else the process's (its pool's threads too)."""
    return time.thread_time if threads == 1 else time.process_time


def time_repeats(
    model: nn.Module,
    example: torch.Tensor,
    settings: LatencySettings,
    *,
    warmup: bool = True,
    cpu_times: list[float] | None = None,
    clock: Callable[[], float] = time.thread_time,
) -> list[float]:
    """Milliseconds of ``settings.repeats`` synchronised forward passes (after
    ``settings.warmup`` untimed ones unless ``warmup`` is False). On the CPU, each pass's
    CPU time by ``clock`` (ms) is appended to ``cpu_times`` when given: unlike wall time,
    it leaves out the time the pass waited for a CPU."""
    if example.device.type == "cuda":
        for _ in range(settings.warmup if warmup else 0):
            model(example)
        torch.cuda.synchronize(example.device)
        times = []
        for _ in range(settings.repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            model(example)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return times
    for _ in range(settings.warmup if warmup else 0):
        model(example)
    times = []
    for _ in range(settings.repeats):
        cpu_start = clock()
        start = time.perf_counter()
        model(example)
        times.append((time.perf_counter() - start) * 1000.0)
        if cpu_times is not None:
            cpu_times.append((clock() - cpu_start) * 1000.0)
    return times


def warm_up_until_steady(
    model: Callable[[torch.Tensor], object],
    example: torch.Tensor,
    settings: LatencySettings,
    *,
    window: int = WARMUP_WINDOW,
    spread: float = WARMUP_SPREAD,
    max_passes: int = WARMUP_MAX_PASSES,
) -> int:
    """Run timed passes until the last ``window`` of them lie within ``spread`` of their
    median ((max - min) / median), or ``max_passes`` ran; the passes run (at least
    ``settings.warmup``). A GPU's first passes pay for clocks ramping up, kernels being
    chosen and caches filling, for a number of passes no fixed warm-up knows."""
    one_pass = dataclasses.replace(settings, warmup=0, repeats=1)
    times: list[float] = []
    while len(times) < max_passes:
        times.extend(time_repeats(model, example, one_pass, warmup=False))
        recent = times[-window:]
        if len(times) >= max(settings.warmup, window):
            median = statistics.median(recent)
            if (max(recent) - min(recent)) / median <= spread:
                break
    return len(times)


def _device_memory(device: torch.device) -> int:
    """Bytes of memory of ``device`` (the host's physical memory for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_fits(model: nn.Module, example: torch.Tensor, batch_size: int) -> None:
    """ValueError when a batch of ``batch_size`` would not fit in the device's memory,
    judged from the input and every layer's output (``example`` is one input)."""
    per_image = example.numel() * example.element_size()
    if batch_size > 1:
        with torch.inference_mode():
            per_image += output_bytes(model, example)
    needed, available = batch_size * per_image, _device_memory(example.device)
    if needed > available:
        raise ValueError(
            f"a latency batch of {batch_size} needs about {needed / 2**30:.1f} GiB for its "
            f"inputs and layer outputs; {example.device} has {available / 2**30:.1f} GiB: "
            "use a smaller batch"
        )


def measure_latency(
    model: nn.Module,
    *,
    input_size: int,
    device: str | torch.device = "cpu",
    settings: LatencySettings | None = None,
) -> LatencyResult:
    """Time ``model`` on random input of shape (batch, 3, input_size, input_size).

    The model is moved to ``device`` (and dtype/memory format) for the measurement and
    is left there in eval mode.
    """
    settings = settings or LatencySettings()
    model, example = prepare_for_timing(model, input_size, device, settings)
    with (
        out_of_memory_as_value_error(settings, input_size, example.device),
        cpu_threads(settings.threads) as threads,
        torch.inference_mode(),
    ):
        times = sorted(time_repeats(model, example, settings))
    return summarize(times, settings, input_size, example.device, threads)


def prepare_for_timing(
    model: nn.Module, input_size: int, device: str | torch.device, settings: LatencySettings
) -> tuple[nn.Module, torch.Tensor]:
    """``model`` on ``device`` in eval mode (dtype and memory format of ``settings``) and
    an input batch for it; ValueError when the device is missing or the batch would not
    fit in its memory."""
    settings.validate()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA latency was requested but no CUDA device is available")
    dtype = DTYPES[settings.dtype]
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    model = model.to(device=device, dtype=dtype, memory_format=memory_format).eval()
    one = torch.randn(1, 3, input_size, input_size, device=device, dtype=dtype)
    _check_fits(model, one, settings.batch_size)
    with out_of_memory_as_value_error(settings, input_size, device):
        example = one.expand(settings.batch_size, -1, -1, -1).contiguous(
            memory_format=memory_format
        )
    return model, example


@contextlib.contextmanager
def out_of_memory_as_value_error(
    settings: LatencySettings, input_size: int, device: torch.device
) -> Iterator[None]:
    """Turn running out of memory while timing into a one-line ValueError."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise ValueError(
            f"out of memory timing batch {settings.batch_size} at {input_size}x{input_size} "
            f"on {device} ({str(error).splitlines()[0][:120]}); use a smaller batch"
        ) from None


def summarize(
    times: list[float],
    settings: LatencySettings,
    input_size: int,
    device: torch.device,
    threads: int,
) -> LatencyResult:
    """The statistics of sorted repeat ``times`` (ms) with what they were measured on."""
    median = statistics.median(times)
    deciles = statistics.quantiles(times, n=10, method="inclusive")
    return LatencyResult(
        median_ms=median,
        mean_ms=statistics.fmean(times),
        stdev_ms=statistics.stdev(times),
        min_ms=times[0],
        p10_ms=deciles[0],
        p90_ms=deciles[-1],
        per_image_ms=median / settings.batch_size,
        batch_size=settings.batch_size,
        input_size=input_size,
        repeats=settings.repeats,
        warmup=settings.warmup,
        device=str(device),
        device_name=device_name(device),
        dtype=settings.dtype,
        threads=threads,
        channels_last=settings.channels_last,
        torch_version=torch.__version__,
    )
