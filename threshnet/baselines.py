"""The networks the ThreshNet paper compares with, built for CIFAR-10-sized inputs.

``--baselines`` trains and times them in a study on the same footing as its trials:

- ``hardnet68``, ``hardnet85``: presets of this package's builder (HarDNet is ThreshNet
  with threshold 0; see threshnet.presets);
- ``mobilenet_v2``: torchvision's ``mobilenet_v2`` (the reference implementation, already
  a dependency);
- ``squeezenet``: torchvision's ``squeezenet1_0`` (the architecture of Iandola et al.);
- ``mobilenet``: timm's ``mobilenetv1_100`` (MobileNet v1, width 1.0): torchvision has no
  MobileNet v1, and timm is the maintained implementation of it.

Every one gets a freshly initialised head with the study's class count and no pretrained
weights. Inputs are the images as they are (32 x 32 for CIFAR-10), as the authors' CIFAR-10
code feeds them (no resizing): the ImageNet stems then reduce them to 1 x 1 before the
classifier, which is how these models run on CIFAR-10 in the paper's comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from threshnet.config import ThreshNetConfig
from threshnet.model import build_model
from threshnet.presets import PRESETS

BASELINES = ("hardnet68", "hardnet85", "mobilenet_v2", "squeezenet", "mobilenet")
SOURCES = {
    "hardnet68": "threshnet builder (preset hardnet68)",
    "hardnet85": "threshnet builder (preset hardnet85)",
    "mobilenet_v2": "torchvision mobilenet_v2",
    "squeezenet": "torchvision squeezenet1_0",
    "mobilenet": "timm mobilenetv1_100",
}


def baseline_config(name: str) -> ThreshNetConfig | None:
    """The builder config of a baseline that is a preset; None for the others."""
    return PRESETS.get(name) if name.startswith("hardnet") else None


def _torchvision(builder: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import torchvision.models

        return getattr(torchvision.models, builder)(weights=None, num_classes=num_classes)

    return build


def _timm(model: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import timm

        return timm.create_model(model, pretrained=False, num_classes=num_classes)

    return build


_BUILDERS: dict[str, Callable[[int], nn.Module]] = {
    "mobilenet_v2": _torchvision("mobilenet_v2"),
    "squeezenet": _torchvision("squeezenet1_0"),
    "mobilenet": _timm("mobilenetv1_100"),
}


def build_baseline(name: str, num_classes: int) -> nn.Module:
    """A freshly initialised baseline network; ValueError lists the known names."""
    config = baseline_config(name)
    if config is not None:
        return build_model(dataclasses.replace(config, num_classes=num_classes))
    if name not in _BUILDERS:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return _BUILDERS[name](num_classes)


def parse_baselines(text: str) -> tuple[str, ...]:
    """``all`` or comma-separated names, in BASELINES order; ValueError names an unknown one."""
    if text.strip() == "all":
        return BASELINES
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(BASELINES))
    if unknown or not names:
        raise ValueError(
            f"unknown baseline(s) {', '.join(unknown) or repr(text)}; choose from "
            f"{', '.join(BASELINES)} or all"
        )
    return tuple(name for name in BASELINES if name in names)
