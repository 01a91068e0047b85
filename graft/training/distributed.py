"""Data-parallel training inside the one training loop: the process group and how work is split.

Under ``torchrun`` every process holds the same data, seed and model; each takes a contiguous
share of every global batch (the same global batches a single process would train on), gradients
are averaged by DistributedDataParallel, and metrics are summed across processes. ``fit`` joins the
process group itself, with the backend for the device it trains on: NCCL on CUDA, gloo on the CPU
(also on a GPU host told to train on the CPU). Without torchrun everything here is a no-op for a
single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from graft.data.loading import share_bounds
from graft.training.freezing import BATCH_NORM_TYPES


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ)


def current() -> ProcessGroup:
    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return ProcessGroup()


def backend_for(device: torch.device) -> str:
    """NCCL only reduces CUDA tensors and gloo is the CPU backend, so the training device decides,
    not whether the host happens to have a GPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: torch.device) -> ProcessGroup:
    """Join the process group torchrun describes in the environment (once per process), with the
    backend for ``device``, the device this process trains on."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return current()
    backend = backend_for(device)
    if backend == "nccl":
        cuda_device = device if device.index is not None else torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(cuda_device)
        dist.init_process_group(backend, device_id=cuda_device)
    else:
        dist.init_process_group(backend)
    return current()


def launch_rank() -> int:
    """This process's global rank as torchrun set it (0 outside torchrun), before or after joining."""
    return int(os.environ.get("RANK", "0"))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(count: int, group: ProcessGroup) -> tuple[int, int]:
    """This process's contiguous ``[start, stop)`` of ``count`` items (sizes differ by at most one)."""
    return share_bounds(count, group.rank, group.world_size)


def sum_across(values: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    if group.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def wrap_for_data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP over the parameters that currently require gradients (call again when that changes)."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def synchronise_batch_norm(model: nn.Module, device: torch.device):
    """On CUDA, swap BatchNorm layers for SyncBatchNorm so batch statistics cover the global batch,
    as in single-process training; return a function that puts the original layers back.

    SyncBatchNorm needs a GPU; on the CPU (gloo) each process normalises with its own share's
    statistics, so BatchNorm layers in training mode see smaller batches than a single process.
    The parameters and running-statistics buffers are shared by both layers, so nothing is copied.
    """
    if device.type != "cuda":
        return lambda: None
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BATCH_NORM_TYPES) and not isinstance(child, nn.SyncBatchNorm):
                sync = nn.SyncBatchNorm.convert_sync_batchnorm(child)
                setattr(parent, name, sync)
                swapped.append((parent, name, child))

    def restore() -> None:
        for parent, name, original in swapped:
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)

    return restore
