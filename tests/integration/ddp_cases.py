"""Training runs that tests/integration/test_distributed_training.py makes in one process and under
torchrun (imported by ``graft.training.worker`` in each process, so no pytest here)."""

from __future__ import annotations

import torch

from graft.training.settings import AugmentationConfig
from graft.data.preprocessing import PreprocessingSpec
from graft.models.architectures import ArchitectureSpec, build_classifier
from graft.training.augment import BatchAugmenter
from graft.training.loop import TrainingData, fit
from graft.training.phases import Phase

PREPROCESSING = PreprocessingSpec(frame_size=28, content_box=20, channels=1, mean=0.2, std=0.3)
CORNERS = [(3, 3), (3, 17), (17, 3)]


def squares(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ``c``: a bright 8x8 square near corner ``c`` on noise."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (per_class * len(CORNERS), 1, 28, 28), generator=generator, dtype=torch.uint8)
    labels = torch.arange(len(CORNERS)).repeat_interleave(per_class)
    for index, label in enumerate(labels.tolist()):
        row, column = CORNERS[label]
        images[index, :, row : row + 8, column : column + 8] = 220
    return images, labels


def train_both_ways(payload: dict) -> dict:
    """lenet_bn trained twice with augmentation and an uneven last batch: once with BatchNorm
    statistics frozen (results independent of how the batch is split), once with them training."""
    train_images, train_labels = squares(payload["per_class"], seed=0)
    val_images, val_labels = squares(8, seed=1)
    data = TrainingData(train_images, train_labels, val_images, val_labels)
    results = {}
    for name, frozen in (("frozen_statistics", True), ("training_statistics", False)):
        torch.manual_seed(0)
        model = build_classifier(ArchitectureSpec(architecture="lenet_bn", num_classes=3, width=4))
        generator = torch.Generator().manual_seed(0)
        phases = [Phase("train", payload["epochs"], [{"params": list(model.parameters()), "lr": 1e-2}], frozen_batch_norm_statistics=frozen)]
        result = fit(
            model, data, phases, PREPROCESSING, batch_size=payload["batch_size"], patience=100, generator=generator,
            augment=BatchAugmenter(AugmentationConfig(low_resolution_probability=0.5), generator),
        )
        results[name] = {"history": result.history_dicts(), "state_dict": model.state_dict(), "images_seen": result.images_seen}
    return results


def run_reporting_world_size(wrapped: dict) -> dict:
    """Run ``wrapped["task"]`` on ``wrapped["payload"]`` and report the world size its training saw."""
    import importlib

    from graft.training import distributed

    module_name, function_name = wrapped["task"].split(":")
    result = getattr(importlib.import_module(module_name), function_name)(wrapped["payload"])
    return {"result": result, "world_size": distributed.current().world_size}
