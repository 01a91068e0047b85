"""A factory of classifiers that all share one shape: ``backbone`` stages, then a linear ``head``.

The split lets strategies freeze, re-initialise or give per-depth learning rates to the parts of
any architecture without knowing which one it is. Three families of names:

- graft's small-image models, named for what they are: ``lenet_bn`` and ``resnet18_small``
  (28x28 digits);
- every torchvision classification builder by its own name (``resnet50``, ``efficientnet_b0``,
  ``vit_b_16``, ...), with its standard stem for photo-sized inputs (``graft.models.backbones``);
- ``timm:<name>`` for a timm model.

Nothing here downloads weights: every model is built with random weights; pretrained ones are
loaded by ``graft.models.weights``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class ArchitectureSpec(BaseModel):
    """Everything needed to rebuild a model before loading its weights."""

    model_config = ConfigDict(frozen=True)

    architecture: str
    num_classes: int
    in_channels: int = 1
    width: int = 32
    frame_size: int = 28  # side of the model's input image


class Classifier(nn.Module):
    """``head(backbone(x))``; ``backbone`` is a sequence of stages from input to features."""

    def __init__(self, stages: list[nn.Module], feature_dim: int, num_classes: int, head: nn.Linear | None = None):
        super().__init__()
        self.backbone = nn.Sequential(*stages)
        self.feature_dim = feature_dim
        self.head = head if head is not None else nn.Linear(feature_dim, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(inputs))

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.backbone(inputs)

    def layer_groups(self) -> list[nn.Module]:
        """Stages from the input to the head, for depth-dependent learning rates."""
        return [*self.backbone, self.head]

    def replace_head(self, num_classes: int) -> None:
        self.head = nn.Linear(self.feature_dim, num_classes)


def _conv_block(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def build_lenet_bn(spec: ArchitectureSpec) -> Classifier:
    """LeNet-5 with BatchNorm: about 4 M multiply-adds for a 28x28 image, fast on two CPU cores."""
    width = spec.width
    feature_dim = 8 * width
    stages = [
        _conv_block(spec.in_channels, width, 5),
        _conv_block(width, 2 * width, 5),
        nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        ),
    ]
    return Classifier(stages, feature_dim, spec.num_classes)


def build_resnet18_small(spec: ArchitectureSpec) -> Classifier:
    """torchvision's ResNet-18 (random weights) with a small-image stem: 3x3 stride-1 conv, no
    max-pool. For 28x28 digits; at 224x224 it costs 15x the FLOPs of the standard ``resnet18``,
    whose pretrained weights do not fit it."""
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=spec.num_classes)
    stem = nn.Sequential(
        nn.Conv2d(spec.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False),
        net.bn1,
        net.relu,
    )
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier([stem, net.layer1, net.layer2, net.layer3, nn.Sequential(net.layer4, pool)], 512, spec.num_classes)


# graft's own models for small images; the names of the other families are resolved on demand.
ARCHITECTURES: dict[str, Callable[[ArchitectureSpec], Classifier]] = {
    "lenet_bn": build_lenet_bn,
    "resnet18_small": build_resnet18_small,
}
TIMM_PREFIX = "timm:"


def architecture_problem(name: str) -> str | None:
    """Why ``name`` cannot be built, or None when it can (checked by the config)."""
    from graft.models import backbones

    if name in ARCHITECTURES:
        return None
    if name.startswith(TIMM_PREFIX):
        return backbones.timm_problem(name.removeprefix(TIMM_PREFIX))
    return backbones.torchvision_problem(name, sorted(ARCHITECTURES))


def is_small_image_model(name: str) -> bool:
    """graft's digit-sized models take any channel count; the others are RGB photo backbones."""
    return name in ARCHITECTURES


def build_classifier(spec: ArchitectureSpec) -> Classifier:
    """A model with random weights in the ``Classifier`` shape."""
    from graft.models import backbones

    if spec.architecture in ARCHITECTURES:
        return ARCHITECTURES[spec.architecture](spec)
    problem = architecture_problem(spec.architecture)
    if problem:
        raise KeyError(problem)
    native = backbones.build_native(spec.architecture, spec.num_classes, spec.frame_size)
    return backbones.as_classifier(spec.architecture, native)


def parameter_bytes(spec: ArchitectureSpec) -> int:
    """Bytes of the model's float32 parameters, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = build_classifier(spec)
    return 4 * sum(parameter.numel() for parameter in model.parameters())
