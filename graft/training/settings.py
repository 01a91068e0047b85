"""How training runs: augmentation, hardware use and distribution.

Kept apart from ``graft.config`` so the training code imports its settings without the pipeline's
whole configuration (whose strategy check imports the strategies, which import training).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from graft.strict_model import StrictModel


class AugmentationConfig(StrictModel):
    rotation_degrees: float = Field(12.0, ge=0, le=180)
    scale_range: tuple[float, float] = (0.9, 1.1)
    translate_fraction: float = Field(0.08, ge=0, le=0.5)
    shear_degrees: float = Field(8.0, ge=0, le=45)
    low_resolution_probability: float = Field(
        0.0, ge=0, le=1, description="Chance that an image is rendered at low resolution and scaled back."
    )
    low_resolution_sizes: tuple[int, int] = (7, 14)
    crop_scale: tuple[float, float] = Field(
        (0.25, 1.0), description="photo: area fraction range of RandomResizedCrop (the affine keys apply to digits only)."
    )
    horizontal_flip: bool = Field(True, description="photo: flip half the training images left to right.")
    enabled: bool = True

    @model_validator(mode="after")
    def _check_ranges(self) -> "AugmentationConfig":
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError("scale_range must be [low, high] with 0 < low <= high")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError("crop_scale must be [low, high] with 0 < low <= high <= 1")
        small, large = self.low_resolution_sizes
        if not 2 <= small <= large:
            raise ValueError("low_resolution_sizes must be [smallest, largest] with 2 <= smallest <= largest")
        return self


class PretrainAugmentationConfig(AugmentationConfig):
    """Source pretraining renders half its images at low resolution, like the 8x8 target scans."""

    low_resolution_probability: float = Field(0.5, ge=0, le=1)


class DistributedConfig(StrictModel):
    pretrain: bool = Field(False, description="Run the pretrain step's training under torchrun with DDP.")
    finetune: bool = Field(False, description="Run each fine-tuning candidate under torchrun with DDP.")
    processes: int | Literal["gpus"] = Field(
        "gpus", description="Processes per node: 'gpus' = one per visible GPU (NCCL), or a number (gloo on CPU)."
    )
    nodes: int = Field(1, ge=1, description="Nodes: 1 runs torchrun in the step; more submit a Kubeflow PyTorchJob.")
    gpus_per_node: int = Field(1, ge=0, description="GPUs each PyTorchJob pod requests (nodes > 1).")
    job_image: str | None = Field(None, description="Image of the PyTorchJob pods (nodes > 1): the step image.")
    job_namespace: str = Field("kubeflow", description="Namespace the PyTorchJob is created in.")
    job_store: str | None = Field(
        None, description="URI (s3://bucket/prefix) for the job's inputs, outputs and shards (nodes > 1)."
    )
    job_timeout_seconds: int = Field(6 * 3600, ge=60, description="How long a step waits for its PyTorchJob.")

    @field_validator("processes")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("processes must be at least 1 or 'gpus'")
        return value

    @model_validator(mode="after")
    def _job_settings_for_several_nodes(self) -> "DistributedConfig":
        if self.nodes > 1 and not (self.job_image and self.job_store and "://" in self.job_store):
            raise ValueError("nodes > 1 needs job_image and job_store (a URI such as s3://bucket/graft-jobs)")
        return self


class ComputeConfig(StrictModel):
    """How training uses the hardware; the CUDA-only switches are ignored on the CPU."""

    bf16_autocast: bool = Field(True, description="CUDA: forward and loss in bfloat16 autocast.")
    channels_last: bool = Field(True, description="CUDA: model and image batches in channels-last layout.")
    compile: bool = Field(False, description="torch.compile the training model (slow first epoch).")
    distributed: DistributedConfig = DistributedConfig()
