"""Latency that holds still on a shared machine: rounds interleaved with a reference.

A single run of repeats measures the machine as much as the network: on a shared CPU a
busy neighbour can make a pass 100x slower for a while. Here the candidate is timed in
rounds, each paired with a fixed reference network timed in the same window, their passes
alternating (which network leads each pair alternates from round to round), so a slow
spell falls on both networks' passes alike:

- a round's figure is its fastest pass: on a shared machine timing noise only ever adds
  time (preemption, a neighbour's burst), so the fastest of a round's repeats is its best
  estimate of the network's own time (as ``timeit`` argues); the candidate's latency is
  the median of its round figures, and its **ratio** to the reference is the median of
  the rounds' ratios, which a machine-wide slow-down leaves unchanged (the pooled
  median and p10/p90 of every repeat are kept beside it);
- a round whose ratio lies far from the others' (beyond ``OUTLIER_MADS`` median absolute
  deviations, and more than ``OUTLIER_MIN_SHARE`` of the median) is measured again, up
  to ``max_extra_rounds`` times;
- the figure's own error is judged, not the rounds' spread: the relative standard error
  of the median ratio (``ratio_se``: sqrt(pi/2) x the rounds' coefficient of variation /
  sqrt(rounds), the median's large-sample error) shrinks as rounds are added, so while
  it is above ``steady_se`` another round is timed (outlier re-measures and added rounds
  share ``max_extra_rounds``); still above, the measurement is flagged ``unsteady``. The
  spread of 5 rounds alone has a long tail even on an idle machine (1.3-15 %,
  BENCHMARKS.md "Why an idle study flags figures"), so a rule on it flagged steady
  networks at random.

The reference ms recorded beside every candidate show the machine's drift over a
study; ``latency_ratio x`` a reference ms taken on an idle device corrects it.

The two networks are timed in one backend (``BACKENDS``): both PyTorch modules (eager),
or both ONNX Runtime sessions of their ONNX exports (``timed_network`` makes one;
threshnet.onnx_runtime), under the same rounds, rules and timers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from threshnet.config import ThreshNetConfig
from threshnet.latency import (
    LatencyResult,
    LatencySettings,
    cpu_clock,
    cpu_threads,
    out_of_memory_as_value_error,
    prepare_for_timing,
    summarize,
    time_repeats,
    warm_up_until_steady,
)
from threshnet.presets import get_preset

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

    Network = nn.Module | InferenceSession  # what measure_steady_latency times

# The largest relative standard error of a steady figure's median ratio: +-5 % is 2.5
# standard errors (were the error normal and the median's own, 99 figures in 100 within
# 5 % of the network's time); against the figures' measured spread: BENCHMARKS.md,
# "Latency stability"
STEADY_SE = 0.02
MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)  # the median's error / the mean's (normal data)
OUTLIER_MADS = 5.0  # a round this many scaled MADs from the median ratio is re-measured
OUTLIER_MIN_SHARE = 0.05  # ... if it is also this far (a share of the median) from it
MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normal data
REFERENCE_PRESET = "threshnet28"  # the reference network: the smallest published model
BACKENDS = ("eager", "onnxruntime")  # PyTorch itself, or ONNX Runtime on the ONNX export
# What a pass's time is: "wall" (perf_counter, or CUDA events on a GPU); or "cpu": the
# thread's CPU time where a CPU computes the pass on one thread (time it waited for a
# CPU left out; BENCHMARKS.md, "Latency stability"), wall time elsewhere
CLOCKS = ("cpu", "wall")


def reference_config() -> ThreshNetConfig:
    """The reference network's config (a ratio of 2 reads "twice ThreshNet28's time")."""
    return get_preset(REFERENCE_PRESET)


@dataclass(frozen=True)
class SteadyLatency:
    """A candidate's latency from rounds interleaved with a reference network, by the
    clock ``clock`` (its statistics below; ``cpu`` keeps the CPU time's either way)."""

    latency_ms: float  # median over the kept rounds of each round's fastest pass
    candidate: LatencyResult  # every repeat of the kept rounds, pooled
    reference_ms: float  # the same figure for the reference network
    ratio: float  # median of the rounds' candidate / reference ratios
    ratio_cv: float  # coefficient of variation of the kept rounds' ratios
    rounds: int  # rounds kept
    remeasured_rounds: int  # outlier rounds measured again
    unsteady: bool  # ratio_se stayed above the limit
    ratio_se: float = 0.0  # relative standard error of ``ratio`` (see ratio_standard_error)
    added_rounds: int = 0  # rounds timed beyond ``rounds`` to bring ratio_se down
    round_ratios: tuple[float, ...] = ()  # the kept rounds' ratios, by ``clock``
    # The same statistics of the passes' CPU time (threshnet.latency.cpu_clock), on the CPU
    cpu: RoundStatistics | None = None
    wall: RoundStatistics | None = None  # ... and of their wall time, whichever the clock
    warmup_passes: int = 0  # of both networks (on a GPU, until they held still)
    clock: str = "wall"  # the clock of the figures above: "wall", or "cpu" (see CLOCKS)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RoundStatistics:
    """What rounds of (candidate ms, reference ms) figures say, by the rules above."""

    latency_ms: float  # median of the candidate's round figures
    reference_ms: float  # median of the reference's
    ratio: float  # median of the rounds' ratios
    ratio_cv: float  # coefficient of variation of the rounds' ratios (0 for one round)
    ratio_se: float  # relative standard error of the median ratio (0 for one round)


def round_statistics(rounds: list[tuple[float, float]]) -> RoundStatistics:
    """Combine rounds of (candidate ms, reference ms) figures."""
    ratios = [candidate / reference for candidate, reference in rounds]
    cv = coefficient_of_variation(ratios)
    return RoundStatistics(
        latency_ms=statistics.median(candidate for candidate, _ in rounds),
        reference_ms=statistics.median(reference for _, reference in rounds),
        ratio=statistics.median(ratios),
        ratio_cv=cv,
        ratio_se=ratio_standard_error(cv, len(ratios)),
    )


def coefficient_of_variation(values: list[float]) -> float:
    """The values' sample standard deviation over their mean (0 for one value)."""
    return statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else 0.0


def ratio_standard_error(cv: float, rounds: int) -> float:
    """The relative standard error of the median of ``rounds`` ratios whose coefficient
    of variation is ``cv`` (0 for one round, which has no spread to judge)."""
    return MEDIAN_SE_FACTOR * cv / math.sqrt(rounds) if rounds > 1 else 0.0


ADD_ROUND = -1  # next_round's answer: time one more round


def next_round(ratios: list[float], steady_se: float = STEADY_SE) -> int | None:
    """What rounds with these ratios need next: the index of the farthest outlier round
    to time again, ``ADD_ROUND`` while the median ratio's relative standard error is
    above ``steady_se``, or None (steady, or as steady as more rounds can tell)."""
    far = outlier_rounds(ratios)
    if far:
        return far[0]
    if ratio_standard_error(coefficient_of_variation(ratios), len(ratios)) > steady_se:
        return ADD_ROUND
    return None


def scaled_mad(values: list[float]) -> float:
    """The values' median absolute deviation x ``MAD_SCALE``: their standard deviation,
    were they normal, which a few far values hardly move."""
    median = statistics.median(values)
    return MAD_SCALE * statistics.median(abs(value - median) for value in values)


def outlier_rounds(ratios: list[float]) -> list[int]:
    """Indexes of the rounds whose ratio lies far from the others', worst first."""
    if len(ratios) < 3:
        return []
    median = statistics.median(ratios)
    spread = scaled_mad(ratios)
    limit = max(OUTLIER_MADS * spread, OUTLIER_MIN_SHARE * median)
    far = [index for index, ratio in enumerate(ratios) if abs(ratio - median) > limit]
    return sorted(far, key=lambda index: -abs(ratios[index] - median))


def timed_network(
    model: nn.Module,
    backend: str,
    *,
    input_size: int,
    device: str | torch.device = "cpu",
    threads: int | None = None,
) -> Network:
    """``model`` as ``backend`` runs it: itself (eager), or an ONNX Runtime session of its
    checked export on ``device`` with ``threads`` intra-op threads (None: torch's count,
    which the eager path keeps when its settings give none)."""
    if backend == "eager":
        return model
    if backend != "onnxruntime":
        raise ValueError(f"latency backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    from threshnet.onnx_export import export_onnx
    from threshnet.onnx_runtime import inference_session

    onnx_model = export_onnx(model, input_size=input_size)
    threads = threads if threads is not None else torch.get_num_threads()
    return inference_session(onnx_model, device=device, threads=threads)


@dataclass(frozen=True)
class _Round:
    """One round's figures (ms): the candidate's passes, and both networks' fastest pass
    by wall time and, on the CPU, by CPU time (candidate, reference; None elsewhere)."""

    times: list[float]
    fastest: float
    reference_fastest: float
    cpu: tuple[float, float] | None


def _round(
    model: Callable[[torch.Tensor], Any],
    reference: Callable[[torch.Tensor], Any],
    example: torch.Tensor,
    settings: LatencySettings,
    reference_first: bool,
    clock: Callable[[], float] | None,
) -> _Round:
    """One round: ``settings.repeats`` passes of each network, alternating pass by pass
    (the reference first or second in each pair), so a slow spell of the machine that
    outlasts a pass falls on both networks' passes alike and each fastest pass escapes it
    (timing one network's passes, then the other's, left the round ratios' CV 1.6-4.5x as high:
    BENCHMARKS.md, "Passes alternating within a round")."""
    one_pass = dataclasses.replace(settings, repeats=1)
    times: dict[str, list[float]] = {"model": [], "reference": []}
    cpu: dict[str, list[float]] = {"model": [], "reference": []}
    pair = [("reference", reference), ("model", model)]
    for _ in range(settings.repeats):
        for name, network in pair if reference_first else pair[::-1]:
            if clock is None:
                times[name] += time_repeats(network, example, one_pass, warmup=False)
            else:
                times[name] += time_repeats(
                    network, example, one_pass, warmup=False, cpu_times=cpu[name], clock=clock
                )
    return _Round(
        times=times["model"],
        fastest=min(times["model"]),
        reference_fastest=min(times["reference"]),
        cpu=(min(cpu["model"]), min(cpu["reference"])) if clock else None,
    )


def measure_steady_latency(
    model: Network,
    reference: Network,
    *,
    input_size: int,
    device: str | torch.device = "cpu",
    settings: LatencySettings | None = None,
    rounds: int = 5,
    max_extra_rounds: int = 10,
    steady_se: float = STEADY_SE,
    clock: str = "wall",
) -> SteadyLatency:
    """Time ``model`` in ``rounds`` rounds interleaved with ``reference``, by ``clock``
    (CLOCKS: "cpu" counts where a CPU computes on one thread, else wall time).

    Each round times ``settings.repeats`` passes of each network (after one warm-up of
    ``settings.warmup`` passes each), then up to ``max_extra_rounds`` more: an outlier
    round again, or a new round while the median ratio's relative standard error is above
    ``steady_se``; see the module docstring for the statistics. Both
    networks are modules, or both ONNX Runtime sessions (whose thread count is their own).
    """
    settings = settings or LatencySettings()
    if rounds < 1 or max_extra_rounds < 0 or steady_se <= 0:
        raise ValueError("rounds must be >= 1, max_extra_rounds >= 0 and steady_se > 0")
    if clock not in CLOCKS:
        raise ValueError(f"latency clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if isinstance(model, nn.Module) and isinstance(reference, nn.Module):
        model, example = prepare_for_timing(model, input_size, device, settings)
        reference, _ = prepare_for_timing(reference, input_size, device, settings)
        threads_in_force = cpu_threads(settings.threads)
    else:
        from threshnet.onnx_runtime import prepare_sessions

        (model, reference), example, session_threads = prepare_sessions(
            (model, reference), input_size, device, settings
        )
        threads_in_force = contextlib.nullcontext(session_threads)
    device = example.device
    remeasured = added = 0
    with (
        out_of_memory_as_value_error(settings, input_size, device),
        threads_in_force as threads,
        torch.inference_mode(),
    ):
        timer = cpu_clock(threads) if device.type == "cpu" else None
        by_cpu = clock == "cpu" and timer is not None and threads == 1

        def ratio(one: _Round) -> float:
            if by_cpu and one.cpu is not None:
                return one.cpu[0] / one.cpu[1]
            return one.fastest / one.reference_fastest

        warmup_passes = 0
        for network in (reference, model):
            if device.type == "cuda":  # until the passes hold still: clocks, kernels
                warmup_passes += warm_up_until_steady(network, example, settings)
                continue
            for _ in range(settings.warmup):
                network(example)
            warmup_passes += settings.warmup
        kept = [
            _round(model, reference, example, settings, index % 2 == 0, timer)
            for index in range(rounds)
        ]
        while remeasured + added < max_extra_rounds:
            action = next_round([ratio(one) for one in kept], steady_se)
            if action is None:
                break
            reference_first = (remeasured + added) % 2 == 1
            again = _round(model, reference, example, settings, reference_first, timer)
            if action == ADD_ROUND:
                kept.append(again)
                added += 1
            else:
                kept[action] = again
                remeasured += 1
    wall = round_statistics([(one.fastest, one.reference_fastest) for one in kept])
    cpu_rounds = [one.cpu for one in kept if one.cpu is not None]
    on_cpu = round_statistics(cpu_rounds) if cpu_rounds else None
    combined = on_cpu if by_cpu and on_cpu is not None else wall
    all_times = sorted(time for one in kept for time in one.times)
    pooled_settings = dataclasses.replace(settings, repeats=len(all_times))
    return SteadyLatency(
        latency_ms=combined.latency_ms,
        candidate=summarize(all_times, pooled_settings, input_size, device, threads),
        reference_ms=combined.reference_ms,
        ratio=combined.ratio,
        ratio_cv=combined.ratio_cv,
        rounds=len(kept),
        remeasured_rounds=remeasured,
        unsteady=combined.ratio_se > steady_se,
        ratio_se=combined.ratio_se,
        added_rounds=added,
        round_ratios=tuple(ratio(one) for one in kept),
        cpu=on_cpu,
        wall=wall,
        warmup_passes=warmup_passes,
        clock="cpu" if combined is on_cpu else "wall",
    )
