"""Everything a study is defined by, and the resources one run of it uses.

``StudySettings`` fixes what the trials of a study measure (space, proxy training,
split, latency protocol, caps, sampler, seed); a resumed study must keep them, so they
are stored in the manifest and compared on resume. ``RunResources`` may change between
runs of the same study (more GPUs, another cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from search.methods.mo_asha import RungSchedule
from search.methods.samplers import DEFAULT_SAMPLER, GP_SHARE, GP_TRIALS
from search.methods.surrogates import Simulation
from space import DEFAULT_SPACE, CostCaps, SearchSpace
from threshnet.config import dataclass_kwargs
from threshnet.latency import LatencySettings
from threshnet.training.loops import TrainSettings

OBJECTIVES = ("val_acc", "latency_ms")
DIRECTIONS = ("maximize", "minimize")
QUIET, NORMAL, VERBOSE = 0, 1, 2  # --quiet, default, --verbose
SCHEDULERS = ("fifo", "mo-asha")  # every trial trains the full budget; or search.methods.mo_asha


@dataclass(frozen=True)
class LatencyProtocol:
    """How each trial's latency is measured (objective: batch 1)."""

    input_size: int | None = None  # None: the training input size
    device: str = "trial"  # "trial" (the trial's device), "cpu" or "cuda"
    batch_size: int | None = None  # also time this batch and report ms per image
    warmup: int = LatencySettings.warmup
    repeats: int = LatencySettings.repeats  # in all, spread over the rounds (>= 3 a round)
    # Rounds interleaved with the reference network (threshnet.steady_latency); 0: one run
    # of repeats, its median, as studies made before manifest version 3 measured
    rounds: int = 5
    # What runs the timed passes: "eager" (PyTorch) or "onnxruntime" (the network's ONNX
    # export in ONNX Runtime, threshnet.onnx_runtime); a manifest without it was eager
    backend: str = "eager"
    # What a pass's time is (threshnet.steady_latency.CLOCKS): "cpu", the thread's CPU
    # time where a CPU times on one thread (wall time elsewhere), or "wall"; a manifest
    # from before the choice (version 3) timed by wall time
    clock: str = "cpu"

    @property
    def repeats_per_round(self) -> int:
        if self.rounds == 0:
            return self.repeats
        return max(3, -(-self.repeats // self.rounds))


@dataclass(frozen=True)
class StudySettings:
    """What a study measures; fixed for its lifetime."""

    space: SearchSpace
    train: TrainSettings
    latency: LatencyProtocol
    caps: CostCaps = field(default_factory=CostCaps)
    data_dir: str | None = None  # None: torchvision's CIFAR-10
    val_size: int | float = 5000
    max_val_images: int | None = None  # stratified cap after the split (smoke)
    split_seed: int = 0
    train_fraction: float = 1.0
    max_train_images: int | None = None
    sampler: str = DEFAULT_SAMPLER
    # gp-tpe hands over from GP to TPE at this many COMPLETE trials; kept in the manifest so
    # that a resumed study hands over where it was started to
    gp_trials: int = GP_TRIALS
    seed: int = 0
    enqueue_presets: bool = True
    scheduler: str = "fifo"
    reduction_factor: float = 3.0  # mo-asha: the top 1/this of a rung go on
    # --simulate: trials sleep and return a surrogate's objectives (no data, no torch)
    simulation: Simulation | None = None

    @property
    def rungs(self) -> tuple[int, ...]:
        """The epochs at which mo-asha judges a trial (the last is the full budget)."""
        return RungSchedule.for_epochs(self.train.epochs, self.reduction_factor).rungs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the manifest's ``settings``); the objectives are recorded too."""
        data = {field.name: getattr(self, field.name) for field in fields(self)}
        data.update(
            {
                name: to_dict(data[name])
                for name, (_, to_dict) in _SECTIONS.items()
                if data[name] is not None
            }
        )
        data["objectives"] = dict(zip(OBJECTIVES, DIRECTIONS, strict=True))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        """Inverse of :meth:`to_dict` (for resuming from a manifest); ValueError names a
        key that is unknown or missing."""
        values = dataclass_kwargs(cls, data, "settings", ignore=frozenset({"objectives"}))
        for name, (from_dict, _) in _SECTIONS.items():
            if values.get(name) is not None:
                values[name] = from_dict(values[name])
        return cls(**values)


def _plain_section(cls: type, name: str) -> Callable[[Any], Any]:
    return lambda data: cls(**dataclass_kwargs(cls, data, f"settings.{name}"))


# The sections of StudySettings that are dataclasses: field -> (from dict, to dict).
_SECTIONS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], dict[str, Any]]]] = {
    "space": (SearchSpace.from_dict, SearchSpace.to_dict),
    "train": (TrainSettings.from_dict, TrainSettings.to_dict),
    "latency": (_plain_section(LatencyProtocol, "latency"), asdict),
    "caps": (_plain_section(CostCaps, "caps"), asdict),
    "simulation": (_plain_section(Simulation, "simulation"), asdict),
}


@dataclass(frozen=True)
class RunResources:
    """Where and how wide one run of a study executes."""

    trials: int
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 when the cluster has GPUs, else 0
    max_concurrent: int | None = None
    address: str | None = None  # join an existing Ray cluster
    num_cpus: int | None = None  # for a local Ray started by us
    cache_dir: str | None = None
    final_pass: bool = True  # re-time the front when the study reaches its trial count
    verbosity: int = 1  # 0 --quiet: the summary only; 2 --verbose: Ray's own output too
    baselines: tuple[str, ...] = ()  # other families to measure (threshnet.baselines)
    gp_share: float = GP_SHARE  # gp-tpe's pacing (search.methods.handover)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The default proxy is the budget that the CPU case study's fidelity check advises by
# issue 20's rule (bench/case_study.py; studies/measured_fidelity.json, whose "cpu" record
# names it): 2 epochs over the training split minus 5,000 validation images, batch 128,
# SGD (Nesterov) at peak lr 0.1 on a one-cycle schedule, label smoothing 0.1, random crop
# and flip. tests/test_measured_fidelity.py fails when the two part. README: "Proxy
# defaults".
DEFAULT_SETTINGS = StudySettings(
    space=DEFAULT_SPACE,
    train=TrainSettings(epochs=2, batch_size=128, lr=0.1),
    latency=LatencyProtocol(),
)

# --smoke: sized for 2 CPU cores; on the bundled CIFAR-10 subset (threshnet.training.
# bundled: 3,750 training images), 3,000 proxy-training and 500 validation images, which
# is enough for the presets to learn beyond chance in 3 epochs, and for a trade-off (at 2
# epochs the small, fast configs also learned fastest: the front was one point).
SMOKE_SETTINGS = StudySettings(
    space=DEFAULT_SPACE,
    train=TrainSettings(epochs=3, batch_size=64, lr=0.05, eval_batch_size=256),
    latency=LatencyProtocol(warmup=2, repeats=5),
    val_size=0.2,
    max_val_images=500,
    max_train_images=3000,
)
SMOKE_TRIALS = 6  # --smoke's default --trials
