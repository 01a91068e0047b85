"""Batches for training and evaluation through ``torch.utils.data.DataLoader``, over shards or tensors.

The dataset is indexed by a whole batch of indices (the sampler yields index lists and the loader
runs with ``batch_size=None``), so a batch is gathered shard by shard in one call rather than image
by image and collated. Worker processes read ahead (``prefetch_factor`` batches each), and on CUDA
the batches land in pinned memory so the copy to the device overlaps the step.

``ShareSampler`` gives each data-parallel process its contiguous share of every global batch of a
per-epoch order: across the processes the shares are disjoint and cover each image once per epoch
(the coverage ``DistributedSampler`` gives, without its padding), and the global batches are the
ones a single process would train on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from graft.data.shards import ShardImages

MAX_WORKERS = 4


def share_bounds(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of ``count`` items for ``rank`` (contiguous; sizes differ by at most one)."""
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class BatchGather(Dataset):
    """``dataset[indices]`` -> (uint8 images, int64 labels) of those indices, in that order."""

    def __init__(self, images, labels: torch.Tensor | None = None):
        self.images = images
        self.labels = labels.cpu() if labels is not None else torch.zeros(images.shape[0], dtype=torch.int64)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.asarray(indices, dtype=np.int64)
        if isinstance(self.images, ShardImages):
            images = self.images.gather(index)
        else:
            images = self.images[torch.from_numpy(index)]
        return images, self.labels[torch.from_numpy(index)]


@dataclass
class BatchPlan:
    """One global batch: its size and this process's ``[first, last)`` rows of it."""

    global_count: int
    first: int
    last: int


class ShareSampler(Sampler[list[int]]):
    """Yields this process's share of each global batch of ``order`` (set per epoch with ``set_order``).

    Global batches of fewer than ``min_batch`` images are skipped (a single image breaks BatchNorm
    in training mode).
    """

    def __init__(self, count: int, batch_size: int, rank: int = 0, world_size: int = 1, min_batch: int = 1):
        self.count, self.batch_size = count, batch_size
        self.rank, self.world_size, self.min_batch = rank, world_size, min_batch
        self.order = torch.arange(count)

    def set_order(self, order: torch.Tensor) -> None:
        self.order = order.cpu()

    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        """``DistributedSampler``-style: a permutation from ``seed + epoch``, the same on every process."""
        self.set_order(torch.randperm(self.count, generator=torch.Generator().manual_seed(seed + epoch)))

    def plans(self) -> list[BatchPlan]:
        plans = []
        for start in range(0, self.count, self.batch_size):
            global_count = min(self.batch_size, self.count - start)
            if global_count < self.min_batch:
                continue
            first, last = share_bounds(global_count, self.rank, self.world_size)
            plans.append(BatchPlan(global_count, first, last))
        return plans

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, self.count, self.batch_size):
            global_index = self.order[start : start + self.batch_size]
            if global_index.numel() < self.min_batch:
                continue
            first, last = share_bounds(global_index.numel(), self.rank, self.world_size)
            yield global_index[first:last].tolist()

    def __len__(self) -> int:
        return len(self.plans())


def loader_workers(images, requested: int | None = None) -> int:
    """Worker processes for reading: none for data held in memory (a batch is one gather), a few
    for shards read from disk, so reading overlaps the training step."""
    if requested is not None:
        return requested
    if not isinstance(images, ShardImages) or images.mapped:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus // 2))


def batch_loader(images, labels: torch.Tensor | None, sampler: Sampler, device: torch.device, workers: int | None = None) -> DataLoader:
    """A DataLoader yielding (uint8 images, labels) batches chosen by ``sampler``."""
    count = loader_workers(images, workers)
    return DataLoader(
        BatchGather(images, labels),
        sampler=sampler,
        batch_size=None,
        num_workers=count,
        pin_memory=device.type == "cuda",
        prefetch_factor=2 if count else None,
        persistent_workers=count > 0,
        multiprocessing_context="fork" if count and hasattr(os, "fork") else None,
    )


class InOrder(Sampler[list[int]]):
    """Consecutive batches of ``indices`` (evaluation and prediction)."""

    def __init__(self, count: int, batch_size: int):
        self.count, self.batch_size = count, batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, self.count, self.batch_size):
            yield list(range(start, min(start + self.batch_size, self.count)))

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)


def image_batches(images, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """uint8 batches of ``images`` in order: slices of a tensor, or shards read by a DataLoader."""
    if not isinstance(images, ShardImages):
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
        return
    loader = batch_loader(images, None, InOrder(len(images), batch_size), device)
    for batch, _ in loader:
        yield batch
