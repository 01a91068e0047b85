"""Pretrain a backbone on the source data."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from graft.config import GraftConfig, config_from_dict
from graft.data.dataset import ImageDataset
from graft.data.preprocessing import PreprocessingSpec, intensity_statistics
from graft.data.splits import stratified_split
from graft.models.architectures import ArchitectureSpec, build_classifier
from graft.models.bundle import ModelBundle
from graft.training.augment import BatchAugmenter
from graft.training.devices import resolve_device, seed_everything
from graft.training.launch import processes_for, run_under_torchrun, should_launch
from graft.training.loop import Phase, TrainingData, TrainingResult, fit


@dataclass
class PretrainResult:
    bundle: ModelBundle
    training: TrainingResult
    holdout_accuracy: float
    train_images: int
    holdout_images: int


def pretrain_source(source: ImageDataset, config: GraftConfig) -> PretrainResult:
    """Train the configured architecture on ``source``; report accuracy on a held-out split.

    With ``compute.distributed.pretrain`` the training runs under torchrun across the node.
    """
    if should_launch(config.compute.distributed.pretrain):
        processes = processes_for(config.compute.distributed, resolve_device(config.device))
        state = run_under_torchrun(
            "graft.pretraining:pretrain_worker",
            {"source": source.to_state(), "config": config.model_dump(mode="json")},
            processes,
        )
        return PretrainResult(
            bundle=ModelBundle.from_state(state["bundle"]),
            training=TrainingResult.from_dict(state["training"]),
            holdout_accuracy=state["holdout_accuracy"],
            train_images=state["train_images"],
            holdout_images=state["holdout_images"],
        )
    generator = seed_everything(config.seed)
    device = resolve_device(config.device)
    images, labels = source.images, source.labels
    subsample = bool(config.pretrain.max_images and len(source) > config.pretrain.max_images)
    if subsample:
        keep = torch.randperm(len(source), generator=generator)[: config.pretrain.max_images]
        images, labels = images[keep], labels[keep]
    holdout = torch.cat([source.predefined("val"), source.predefined("test")])
    if not subsample and holdout.numel() > 0:
        # The source's own val/test folders are its held-out set, as its authors meant them.
        parts = {"train": source.predefined("train"), "holdout": torch.sort(holdout).values}
    else:
        parts = stratified_split(
            labels, source.num_classes, {"holdout": config.pretrain.holdout_fraction, "train": 0.0}, config.seed
        )
    mean, std = intensity_statistics(images[parts["train"]])
    preprocessing = PreprocessingSpec(
        frame_size=config.data.frame_size,
        content_box=config.data.content_box,
        channels=config.data.channels,
        mean=mean,
        std=std,
    )
    spec = ArchitectureSpec(
        architecture=config.model.architecture,
        num_classes=source.num_classes,
        in_channels=config.data.channels,
        width=config.model.width,
        frame_size=config.data.frame_size,
    )
    model = build_classifier(spec).to(device)
    hp = config.pretrain
    phase = Phase(
        "pretrain",
        hp.epochs,
        [{"params": list(model.parameters()), "lr": hp.learning_rate, "weight_decay": hp.weight_decay}],
    )
    data = TrainingData(images[parts["train"]], labels[parts["train"]], images[parts["holdout"]], labels[parts["holdout"]])
    training = fit(
        model,
        data,
        [phase],
        preprocessing,
        batch_size=hp.batch_size,
        patience=hp.epochs,
        generator=generator,
        augment=BatchAugmenter(hp.augmentation, generator) if hp.augmentation.enabled else None,
        label="pretrain",
        compute=config.compute,
    )
    bundle = ModelBundle.from_model(model.cpu(), spec, source.class_names, preprocessing)
    return PretrainResult(
        bundle=bundle,
        training=training,
        holdout_accuracy=training.best_val_accuracy,
        train_images=int(parts["train"].numel()),
        holdout_images=int(parts["holdout"].numel()),
    )


def pretrain_worker(payload: dict) -> dict:
    """One torchrun process of ``pretrain_source``: the same training, on this process's share."""
    result = pretrain_source(ImageDataset.from_state(payload["source"]), config_from_dict(payload["config"]))
    return {
        "bundle": result.bundle.to_state(),
        "training": result.training.to_dict(),
        "holdout_accuracy": result.holdout_accuracy,
        "train_images": result.train_images,
        "holdout_images": result.holdout_images,
    }
