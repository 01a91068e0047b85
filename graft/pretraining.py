"""The source model: the initial weights (random or ``model.weights``), trained on the source data
for ``pretrain.epochs`` (0: taken as they are, and no source data is needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from graft.config import GraftConfig, config_from_dict
from graft.data.dataset import ImageDataset, Images, subset
from graft.data.preprocessing import PreprocessingSpec
from graft.data.shards import stream_statistics
from graft.data.splits import stratified_split
from graft.models.architectures import ArchitectureSpec
from graft.models.bundle import ModelBundle
from graft.models.weights import InitialModel, load_initial_model
from graft.training.augment import make_augmenter
from graft.training.devices import resolve_device, seed_everything
from graft.training.launch import processes_for, run_under_torchrun, should_launch
from graft.training.loop import TrainingData, TrainingResult, fit
from graft.training.phases import Phase


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class PretrainResult:
    bundle: ModelBundle
    training: TrainingResult
    holdout_accuracy: float | None  # None: not trained on source data here
    train_images: int
    holdout_images: int
    lineage: dict[str, str] = field(default_factory=dict)  # which weights the source model started from


def source_spec(config: GraftConfig, num_classes: int) -> ArchitectureSpec:
    input_size = config.data.crop_size if config.data.geometry == "photo" else config.data.frame_size
    return ArchitectureSpec(
        architecture=config.model.architecture,
        num_classes=num_classes,
        in_channels=config.data.channels,
        width=config.model.width,
        frame_size=input_size,
    )


def source_preprocessing(config: GraftConfig, initial: InitialModel, train_images: Images | None) -> PreprocessingSpec:
    """The data's geometry; the statistics the weights expect, else those of the source images,
    else ImageNet's for RGB backbones."""
    if initial.preprocessing is not None:
        mean, std = initial.preprocessing.mean, initial.preprocessing.std
    elif initial.registered_preprocessing is not None:
        mean, std = initial.registered_preprocessing["mean"], initial.registered_preprocessing["std"]
    elif train_images is not None and train_images.numel():
        mean, std = stream_statistics(train_images)  # a batch at a time: no float copy of the whole set
    else:
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if config.data.channels == 3 else (0.5, 0.25)
    return PreprocessingSpec(
        frame_size=config.data.frame_size,
        content_box=config.data.content_box,
        channels=config.data.channels,
        mean=mean,
        std=std,
        geometry=config.data.geometry,
        crop_size=config.data.crop_size,
    )


def initial_source_model(config: GraftConfig, num_classes: int) -> InitialModel:
    return load_initial_model(source_spec(config, num_classes), config.model.weights)


def untrained_source(config: GraftConfig) -> PretrainResult:
    """``pretrain.epochs: 0``: the initial weights are the source model."""
    initial = initial_source_model(config, num_classes=2)
    preprocessing = source_preprocessing(config, initial, None)
    bundle = ModelBundle.from_model(initial.model.eval(), initial.spec, initial.class_names, preprocessing)
    return PretrainResult(bundle, TrainingResult(), None, 0, 0, lineage=initial.lineage)


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
            lineage=state["lineage"],
        )
    if config.pretrain.epochs == 0:
        return untrained_source(config)
    generator = seed_everything(config.seed)
    device = resolve_device(config.device)
    images, labels = source.images, source.labels
    subsample = bool(config.pretrain.max_images and len(source) > config.pretrain.max_images)
    if subsample:
        keep = torch.randperm(len(source), generator=generator)[: config.pretrain.max_images]
        images, labels = subset(images, keep), labels[keep]
    holdout = torch.cat([source.predefined("val"), source.predefined("test")])
    if not subsample and holdout.numel() > 0:
        # The source's own val/test folders are its held-out set, as its authors meant them.
        parts = {"train": source.predefined("train"), "holdout": torch.sort(holdout).values}
    else:
        parts = stratified_split(
            labels, source.num_classes, {"holdout": config.pretrain.holdout_fraction, "train": 0.0}, config.seed
        )
    initial = initial_source_model(config, source.num_classes)
    preprocessing = source_preprocessing(config, initial, subset(images, parts["train"]))
    model, spec = initial.model, initial.spec
    if config.model.weights and initial.class_names != list(source.class_names):
        model.replace_head(source.num_classes)  # continued pretraining on the source's own classes
        spec = spec.model_copy(update={"num_classes": source.num_classes})
    model = model.to(device)
    hp = config.pretrain
    phase = Phase(
        "pretrain",
        hp.epochs,
        [{"params": list(model.parameters()), "lr": hp.learning_rate, "weight_decay": hp.weight_decay}],
    )
    data = TrainingData(
        subset(images, parts["train"]), labels[parts["train"]], subset(images, parts["holdout"]), labels[parts["holdout"]]
    )
    training = fit(
        model,
        data,
        [phase],
        preprocessing,
        batch_size=hp.batch_size,
        patience=hp.epochs,
        generator=generator,
        augment=make_augmenter(config.data, hp.augmentation, generator),
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
        lineage=initial.lineage,
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
        "lineage": result.lineage,
    }
