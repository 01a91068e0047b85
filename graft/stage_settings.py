"""The part of the validated config each pipeline stage depends on, and nothing else.

Steps get these as ZenML parameters (pydantic models), so a step's cache key follows exactly what
it reads, and every field is required: a section a stage was not given is an error, never a
default. Build them from a ``GraftConfig`` with ``of``.
"""

from __future__ import annotations

from typing import Literal

from graft.config import Device, DataConfig, FinetuneConfig, GateConfig, GraftConfig, ModelConfig, PretrainConfig
from graft.strict_model import StrictModel
from graft.training.settings import ComputeConfig


class SourceData(StrictModel):
    """The data keys the source side depends on: a new target, label budget or ``decode_workers``
    (a speed setting) keeps ingest and pretrain cached."""

    source: str
    geometry: Literal["digits", "photo"]
    frame_size: int
    content_box: int
    crop_size: int | None
    channels: Literal[1, 3]

    @classmethod
    def of(cls, data: DataConfig) -> "SourceData":
        return cls(**data.model_dump(include=set(cls.model_fields)))


class PretrainSettings(StrictModel):
    """What source pretraining reads."""

    seed: int
    device: Device
    data: SourceData
    model: ModelConfig
    pretrain: PretrainConfig
    compute: ComputeConfig

    @classmethod
    def of(cls, config: GraftConfig) -> "PretrainSettings":
        return cls(
            seed=config.seed, device=config.device, data=SourceData.of(config.data), model=config.model,
            pretrain=config.pretrain, compute=config.compute,
        )


class TargetSettings(StrictModel):
    """What decoding, splitting and gating the target reads."""

    seed: int
    data: DataConfig
    gate: GateConfig

    @classmethod
    def of(cls, config: GraftConfig) -> "TargetSettings":
        return cls(seed=config.seed, data=config.data, gate=config.gate)


class FinetuneSettings(StrictModel):
    """What fine-tuning one candidate reads (the source model and target splits come as artifacts)."""

    seed: int
    device: Device
    data: DataConfig
    finetune: FinetuneConfig
    compute: ComputeConfig

    @classmethod
    def of(cls, config: GraftConfig) -> "FinetuneSettings":
        return cls(seed=config.seed, device=config.device, data=config.data, finetune=config.finetune, compute=config.compute)
