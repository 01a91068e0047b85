"""What each node reports when tests/integration/test_multinode_shards.py starts two torchrun nodes
(imported by ``graft.training.worker`` in each process, so no pytest here)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from graft.data.dataset import ImageDataset
from graft.data.loading import ShareSampler, batch_loader
from graft.models.architectures import ArchitectureSpec, build_classifier
from graft.training import distributed
from graft.training.loop import TrainingData, fit
from graft.training.phases import Phase
from tests.integration.ddp_cases import PREPROCESSING


def indices_per_epoch(payload: dict) -> dict:
    """Join the group, read two epochs of the sharded dataset through this rank's loader, train one
    epoch on it, and write which indices this rank saw to ``<folder>/rank<r>.json``."""
    group = distributed.init_from_env(torch.device("cpu"))
    dataset = ImageDataset.from_state(torch.load(payload["dataset"], weights_only=True))
    positions = torch.arange(len(dataset))  # the labels the loader returns: each image's own index
    sampler = ShareSampler(len(dataset), payload["batch_size"], group.rank, group.world_size)
    loader = batch_loader(dataset.images, positions, sampler, torch.device("cpu"), workers=1)
    seen = []
    for epoch in range(2):
        sampler.set_epoch(epoch, seed=7)
        seen.append([index for _, batch in loader for index in batch.tolist()])
    torch.manual_seed(0)
    model = build_classifier(ArchitectureSpec(architecture="lenet_bn", num_classes=dataset.num_classes, width=4))
    phase = Phase("train", 1, [{"params": list(model.parameters()), "lr": 1e-2}], frozen_batch_norm_statistics=True)
    data = TrainingData(dataset.images, dataset.labels, dataset.images, dataset.labels)
    result = fit(model, data, [phase], PREPROCESSING, batch_size=payload["batch_size"], patience=1, generator=torch.Generator())
    report = {"rank": group.rank, "world_size": group.world_size, "seen": seen, "images_seen": result.images_seen}
    Path(payload["folder"], f"rank{group.rank}.json").write_text(json.dumps(report))
    return report
