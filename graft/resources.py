"""CPU and memory a step's pod asks for, sized from the data it reads.

Since images are read from shards a batch at a time, a step's memory no longer grows with the
pixels: what grows with the data is the index (a few hundred bytes per image), the records the gate
validates, and the memory-mapped part of the data (up to ``MAPPED_LIMIT_BYTES``, which the kernel
may page out but a pod's cgroup counts). The rest is a fixed base (interpreter, torch, ZenML,
MLflow, Great Expectations: 1.0 GB measured on CPU, 1.5 GiB given), the batches in flight, the
decode buffers, and the models a step holds. Requests equal limits, so a pod is never killed for
using what it asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from graft.data.shards import MAPPED_LIMIT_BYTES, SHARD_BYTES

if TYPE_CHECKING:
    from graft.config import GraftConfig

GIB = 1 << 30
MIB = 1 << 20
BASE_MEMORY = 3 * GIB  # one training process: interpreter, torch, a CUDA context and the model
STEP_BASE_MEMORY = 3 * GIB // 2  # a step process that does not train
INDEX_BYTES_PER_IMAGE = 512  # path, label, split, content key, shard and offset
RECORD_BYTES_PER_IMAGE = 4096  # the gate's per-file table (pandas, Great Expectations' copies)
DECODE_WORKER_MEMORY = 256 * MIB  # one decode process: PIL, one source image, its framing
LOADER_WORKERS, PREFETCH = 4, 2


@dataclass(frozen=True)
class PodResources:
    cpu: float
    memory_bytes: int
    gpus: int = 0

    def requests(self) -> dict:
        """Kubernetes quantities, as a container's ``resources.requests``."""
        values = {"cpu": f"{self.cpu:g}", "memory": f"{math.ceil(self.memory_bytes / GIB)}Gi"}
        if self.gpus:
            values["nvidia.com/gpu"] = str(self.gpus)
        return values

    def zenml_settings(self) -> dict:
        """ZenML ``ResourceSettings`` fields (memory rounded up to 256 MiB)."""
        return {"cpu_count": self.cpu, "memory": f"{256 * math.ceil(self.memory_bytes / (256 * MIB))}MiB"}


@dataclass(frozen=True)
class DataShape:
    """How many images a step reads and the bytes of one decoded image."""

    images: int
    image_bytes: int

    @property
    def mapped_bytes(self) -> int:
        return min(self.images * self.image_bytes, MAPPED_LIMIT_BYTES)

    @property
    def index_bytes(self) -> int:
        return self.images * INDEX_BYTES_PER_IMAGE


def resources_for(images: int, image_bytes: int, batch_size: int, processes: int, gpus: int,
                  loader_workers: int = LOADER_WORKERS, prefetch: int = PREFETCH, model_bytes: int = 0) -> PodResources:
    """Requests for one pod training ``processes`` processes on ``images`` images of ``image_bytes`` each:
    the batches in flight (loader workers x prefetch x batch, uint8 and float32 copies), the mapped
    data, and per process the base, the index and four copies of the model (weights, gradients, two
    optimiser moments) plus the best state kept on the CPU."""
    in_flight = processes * (loader_workers * prefetch + 2) * batch_size * image_bytes * 5
    shape = DataShape(images, image_bytes)
    per_process = BASE_MEMORY + shape.index_bytes + 5 * model_bytes
    return PodResources(cpu=processes * (loader_workers + 1), memory_bytes=processes * per_process + in_flight + shape.mapped_bytes,
                        gpus=gpus)


def decode_resources(data: DataShape, workers: int) -> PodResources:
    """A step that decodes files into shards (ingest, the gate): workers, the shard being written
    and the one being verified, the index and the per-file records."""
    memory = (STEP_BASE_MEMORY + workers * DECODE_WORKER_MEMORY + 2 * SHARD_BYTES + data.index_bytes
              + data.images * RECORD_BYTES_PER_IMAGE)
    return PodResources(cpu=workers, memory_bytes=memory)


def decode_workers_for(images: int, configured: int | None) -> int:
    """The configured decode workers, else one per 5,000 images between 2 and 8."""
    return configured or max(2, min(8, math.ceil(images / 5000)))


def step_resources(source: DataShape, target: DataShape, *, model_bytes: int, candidates: int, pretrain_batch: int,
                   finetune_batch: int, decode_workers: int | None = None, gpus: int = 0) -> dict[str, PodResources]:
    """What each pipeline step asks for. ``candidates``: the strategies fine-tuned (each one's model
    is kept until the register step); ``gpus``: per training step."""
    held_models = candidates * model_bytes
    finetune = resources_for(target.images, target.image_bytes, finetune_batch, 1, gpus, model_bytes=model_bytes)
    evaluate = STEP_BASE_MEMORY + target.index_bytes + target.mapped_bytes + held_models + 2 * finetune_batch * target.image_bytes * 5
    return {
        "ingest_source": decode_resources(source, decode_workers_for(source.images, decode_workers)),
        "pretrain": resources_for(source.images, source.image_bytes, pretrain_batch, 1, gpus, model_bytes=model_bytes),
        "validate_target": decode_resources(target, decode_workers_for(target.images, decode_workers)),
        "finetune": replace(finetune, memory_bytes=finetune.memory_bytes + held_models),
        "evaluate": PodResources(cpu=2, memory_bytes=evaluate),
        "register": PodResources(cpu=1, memory_bytes=STEP_BASE_MEMORY + 3 * held_models),  # export and its check
    }


def pipeline_resources(config: "GraftConfig") -> dict[str, PodResources]:
    """``step_resources`` for a run of ``config``: its data counted (a directory scan, nothing
    decoded) and its model's parameters counted on the meta device."""
    from graft.data.sources import image_count
    from graft.models.architectures import ArchitectureSpec, parameter_bytes

    data = config.data
    image_bytes = data.channels * data.frame_size * data.frame_size
    source_images = image_count(data.source, "source")
    if config.pretrain.max_images is not None:
        source_images = min(source_images, config.pretrain.max_images)
    spec = ArchitectureSpec(architecture=config.model.architecture, num_classes=10, in_channels=data.channels,
                            width=config.model.width, frame_size=data.crop_size or data.frame_size)
    return step_resources(
        DataShape(source_images, image_bytes), DataShape(image_count(data.target, "target"), image_bytes),
        model_bytes=parameter_bytes(spec), candidates=len(config.finetune.strategies),
        pretrain_batch=config.pretrain.batch_size, finetune_batch=config.finetune.batch_size,
        decode_workers=data.decode_workers,
    )
