"""Tiny synthetic images and a tiny source model, as fixtures the unit and integration conftests import.

Everything here runs on the CPU in well under a second.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRAFT_PROGRESS", "0")  # no tqdm bars in test output

import pytest
import torch

from graft.data.dataset import ImageDataset
from graft.data.preprocessing import PreprocessingSpec
from graft.models.architectures import ArchitectureSpec, build_classifier
from graft.models.bundle import ModelBundle

# Top-left corners of the 8x8 bright square that identifies each synthetic class.
BLOB_CORNERS = [(3, 3), (3, 17), (17, 3), (17, 17)]
CLASS_NAMES = ["a", "b", "c"]
PREPROCESSING = PreprocessingSpec(frame_size=28, content_box=20, channels=1, mean=0.2, std=0.3)


def make_blobs(per_class: int, seed: int, num_classes: int = 3, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """A linearly separable problem: class ``c`` is a bright square near corner ``c``, on noise."""
    generator = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for label in range(num_classes):
        top, left = BLOB_CORNERS[label]
        for _ in range(per_class):
            image = torch.rand(1, size, size, generator=generator) * 40
            dy, dx = torch.randint(-2, 3, (2,), generator=generator).tolist()
            image[:, top + dy : top + dy + 8, left + dx : left + dx + 8] += 200
            images.append(image)
            labels.append(label)
    return torch.stack(images).clamp(0, 255).to(torch.uint8), torch.tensor(labels, dtype=torch.int64)


@pytest.fixture
def blobs():
    """The ``make_blobs`` factory."""
    return make_blobs


@pytest.fixture
def blob_dataset() -> ImageDataset:
    images, labels = make_blobs(per_class=20, seed=0)
    return ImageDataset(images=images, labels=labels, class_names=list(CLASS_NAMES), origin="synthetic:blobs")


@pytest.fixture
def preprocessing() -> PreprocessingSpec:
    return PREPROCESSING


@pytest.fixture
def source_bundle() -> ModelBundle:
    """A small LeNet-BN with random weights and non-trivial BatchNorm statistics, on 3 classes."""
    torch.manual_seed(1234)
    spec = ArchitectureSpec(architecture="lenet_bn", num_classes=len(CLASS_NAMES), width=4)
    model = build_classifier(spec)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(500)
    return ModelBundle.from_model(model, spec, list(CLASS_NAMES), PREPROCESSING)
