"""The source model: the initial weights (random or ``model.weights``), trained on the source data
for ``pretrain.epochs`` (0: taken as they are, and no source data is needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from graft.data.dataset import ImageDataset, Images, subset
from graft.data.preprocessing import PreprocessingSpec
from graft.data.shards import stream_statistics
from graft.data.splits import stratified_split
from graft.models.architectures import ArchitectureSpec
from graft.models.bundle import ModelBundle
from graft.models.weights import InitialModel, load_initial_model
from graft.stage_settings import PretrainSettings
from graft.training.augment import make_augmenter
from graft.training.devices import resolve_device, seed_everything
from graft.training.launch import DataSize, run_distributed, should_launch
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

    def to_state(self) -> dict:
        """Tensors, numbers, strings, lists and dicts only: what a torchrun worker hands back."""
        return {
            "bundle": self.bundle.to_state(),
            "training": self.training.to_dict(),
            "holdout_accuracy": self.holdout_accuracy,
            "train_images": self.train_images,
            "holdout_images": self.holdout_images,
            "lineage": self.lineage,
        }

    @classmethod
    def from_state(cls, state: dict) -> "PretrainResult":
        return cls(
            bundle=ModelBundle.from_state(state["bundle"]),
            training=TrainingResult.from_dict(state["training"]),
            holdout_accuracy=state["holdout_accuracy"],
            train_images=state["train_images"],
            holdout_images=state["holdout_images"],
            lineage=state["lineage"],
        )


def source_spec(settings: PretrainSettings, num_classes: int) -> ArchitectureSpec:
    input_size = settings.data.crop_size if settings.data.geometry == "photo" else settings.data.frame_size
    return ArchitectureSpec(
        architecture=settings.model.architecture,
        num_classes=num_classes,
        in_channels=settings.data.channels,
        width=settings.model.width,
        frame_size=input_size,
    )


def source_preprocessing(settings: PretrainSettings, initial: InitialModel, train_images: Images | None) -> PreprocessingSpec:
    """The data's geometry; the statistics the weights expect, else those of the source images,
    else ImageNet's for RGB backbones."""
    if initial.preprocessing is not None:
        mean, std = initial.preprocessing.mean, initial.preprocessing.std
    elif initial.registered_preprocessing is not None:
        mean, std = initial.registered_preprocessing["mean"], initial.registered_preprocessing["std"]
    elif train_images is not None and train_images.numel():
        mean, std = stream_statistics(train_images)  # a batch at a time: no float copy of the whole set
    else:
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if settings.data.channels == 3 else (0.5, 0.25)
    return PreprocessingSpec(
        frame_size=settings.data.frame_size,
        content_box=settings.data.content_box,
        channels=settings.data.channels,
        mean=mean,
        std=std,
        geometry=settings.data.geometry,
        crop_size=settings.data.crop_size,
    )


def initial_source_model(settings: PretrainSettings, num_classes: int) -> InitialModel:
    return load_initial_model(source_spec(settings, num_classes), settings.model.weights)


def untrained_source(settings: PretrainSettings) -> PretrainResult:
    """``pretrain.epochs: 0``: the initial weights are the source model."""
    initial = initial_source_model(settings, num_classes=2)
    preprocessing = source_preprocessing(settings, initial, None)
    bundle = ModelBundle.from_model(initial.model.eval(), initial.spec, initial.class_names, preprocessing)
    return PretrainResult(bundle, TrainingResult(), None, 0, 0, lineage=initial.lineage)


def pretrain_source(source: ImageDataset, settings: PretrainSettings) -> PretrainResult:
    """Train the configured architecture on ``source``; report accuracy on a held-out split.

    With ``compute.distributed.pretrain`` the training runs under torchrun across the node.
    """
    if should_launch(settings.compute.distributed.pretrain):
        return _pretrain_distributed(source, settings)
    if settings.pretrain.epochs == 0:
        return untrained_source(settings)
    generator = seed_everything(settings.seed)
    device = resolve_device(settings.device)
    images, labels, parts = _source_parts(source, settings, generator)
    initial = initial_source_model(settings, source.num_classes)
    preprocessing = source_preprocessing(settings, initial, subset(images, parts["train"]))
    model, spec = initial.model, initial.spec
    if settings.model.weights and initial.class_names != list(source.class_names):
        model.replace_head(source.num_classes)  # continued pretraining on the source's own classes
        spec = spec.model_copy(update={"num_classes": source.num_classes})
    model = model.to(device)
    hp = settings.pretrain
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
        augment=make_augmenter(settings.data, hp.augmentation, generator),
        label="pretrain",
        compute=settings.compute,
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


def _source_parts(source: ImageDataset, settings: PretrainSettings, generator: torch.Generator):
    """The source images (capped at ``pretrain.max_images``), their labels, and the train and holdout indices."""
    images, labels = source.images, source.labels
    subsample = bool(settings.pretrain.max_images and len(source) > settings.pretrain.max_images)
    if subsample:
        keep = torch.randperm(len(source), generator=generator)[: settings.pretrain.max_images]
        images, labels = subset(images, keep), labels[keep]
    holdout = torch.cat([source.predefined("val"), source.predefined("test")])
    if not subsample and holdout.numel() > 0:
        # The source's own val/test folders are its held-out set, as its authors meant them.
        return images, labels, {"train": source.predefined("train"), "holdout": torch.sort(holdout).values}
    parts = stratified_split(labels, source.num_classes, {"holdout": settings.pretrain.holdout_fraction, "train": 0.0}, settings.seed)
    return images, labels, parts


def _pretrain_distributed(source: ImageDataset, settings: PretrainSettings) -> PretrainResult:
    setting = settings.compute.distributed
    if setting.nodes > 1:
        source = source.on_store(f"{setting.job_store.rstrip('/')}/decoded")
    state = run_distributed(
        "graft.pretraining:pretrain_worker",
        {"source": source.to_state(), "settings": settings.model_dump(mode="json")},
        setting, resolve_device(settings.device), DataSize(len(source), source.images.numel() // max(1, len(source)),
                                                         settings.pretrain.batch_size),
    )
    return PretrainResult.from_state(state)


def pretrain_worker(payload: dict) -> dict:
    """One torchrun process of ``pretrain_source``: the same training, on this process's share."""
    return pretrain_source(ImageDataset.from_state(payload["source"]), PretrainSettings.model_validate(payload["settings"])).to_state()
