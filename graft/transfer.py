"""Fine-tune one candidate per strategy on the labelled target budget."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from graft.data.dataset import TargetSplits
from graft.data.preprocessing import normalise
from graft.models.bundle import ModelBundle
from graft.stage_settings import FinetuneSettings
from graft.strategies import TransferContext, strategy_class
from graft.strategies.base import FitSettings, StrategyParams, target_spec
from graft.training.augment import make_augmenter
from graft.training.devices import resolve_device, seed_everything
from graft.training.launch import DataSize, run_distributed, should_launch
from graft.training.loop import TrainingData, TrainingResult

ADAPTATION_IMAGES = 4096


@dataclass
class Candidate:
    """A model trained by one strategy, with what is known about it so far."""

    strategy: str
    bundle: ModelBundle
    params: dict
    history: list[dict]
    val_accuracy: float
    val_loss: float
    best_epoch: int
    seconds: float
    mlflow_run_id: str = ""

    def to_state(self) -> dict:
        return {
            "strategy": self.strategy,
            "bundle": self.bundle.to_state(),
            "params": self.params,
            "history": self.history,
            "val_accuracy": self.val_accuracy,
            "val_loss": self.val_loss,
            "best_epoch": self.best_epoch,
            "seconds": self.seconds,
            "mlflow_run_id": self.mlflow_run_id,
        }

    @classmethod
    def from_state(cls, state: dict) -> "Candidate":
        return cls(**{**state, "bundle": ModelBundle.from_state(state["bundle"])})


def same_label_set(source: ModelBundle, target: TargetSplits) -> bool:
    return list(source.class_names) == list(target.dataset.class_names)


def adaptation_images(target: TargetSplits) -> torch.Tensor:
    """The unlabelled-use images (train + unlabelled pool), at most ``ADAPTATION_IMAGES`` of them,
    evenly spaced: enough for BatchNorm statistics, a bounded amount of memory for any target."""
    pool = torch.cat([target.indices["train"], target.indices["unlabeled"]])
    if pool.numel() > ADAPTATION_IMAGES:
        pool = pool[torch.linspace(0, pool.numel() - 1, ADAPTATION_IMAGES).round().long()]
    return target.dataset.images[pool]


def train_candidate(strategy_name: str, source: ModelBundle, target: TargetSplits, settings: FinetuneSettings) -> Candidate:
    """Build, adapt and train one strategy's model; deterministic for a given config and seed.

    When the strategy's parameters name a ``search``, one model is trained per combination and
    the best on the validation split is kept (accuracy, then validation loss); the candidate's
    parameters list every combination's validation scores and seconds. With
    ``compute.distributed.finetune`` the training runs under torchrun across the node.
    """
    if should_launch(settings.compute.distributed.finetune):
        setting = settings.compute.distributed
        if setting.nodes > 1:
            target = dataclasses.replace(target, dataset=target.dataset.on_store(f"{setting.job_store.rstrip('/')}/decoded"))
        images = target.dataset.images
        state = run_distributed(
            "graft.transfer:finetune_worker",
            {"strategy": strategy_name, "source": source.to_state(), "target": target.to_state(), "settings": settings.model_dump(mode="json")},
            setting, resolve_device(settings.device),
            DataSize(len(images), images.numel() // max(1, len(images)), settings.finetune.batch_size),
        )
        return Candidate.from_state(state)
    configured = strategy_class(strategy_name).Params.model_validate(settings.finetune.strategies.get(strategy_name) or {})
    tried = [_train_once(strategy_name, configured.with_values(values), source, target, settings) for values in configured.search_grid()]
    best = max(range(len(tried)), key=lambda index: (tried[index].val_accuracy, -tried[index].val_loss))
    chosen = tried[best]
    if configured.search:
        chosen.params["search"] = [
            {"values": values, "val_accuracy": candidate.val_accuracy, "val_loss": candidate.val_loss,
             "seconds": round(candidate.seconds, 2), "chosen": index == best}
            for index, (values, candidate) in enumerate(zip(configured.search_grid(), tried, strict=True))
        ]
        chosen.seconds = sum(candidate.seconds for candidate in tried)
    return chosen


def _train_once(strategy_name: str, params: StrategyParams, source: ModelBundle, target: TargetSplits, settings: FinetuneSettings) -> Candidate:
    """One model with these parameters; the test split is not read (only train, unlabeled and val)."""
    generator = seed_everything(settings.seed)
    device = resolve_device(settings.device)
    strategy = strategy_class(strategy_name)(params)
    context = TransferContext(
        class_names=target.dataset.class_names,
        same_label_set=same_label_set(source, target),
        adaptation_inputs=normalise(adaptation_images(target), source.preprocessing),
        device=device,
        unlabeled_images=target.view("unlabeled"),
    )
    model = strategy.build_model(source, context).to(device)
    strategy.prepare(model, context)
    fit_settings = FitSettings(
        preprocessing=source.preprocessing,
        batch_size=settings.finetune.batch_size,
        patience=settings.finetune.patience,
        epoch_scale=settings.finetune.epoch_scale,
        generator=generator,
        data=settings.data,
        augmentation=settings.finetune.augmentation,
        augment=make_augmenter(settings.data, settings.finetune.augmentation, generator),
        compute=settings.compute,
    )
    data = TrainingData(target.view("train"), target.labels("train"), target.view("val"), target.labels("val"))
    result: TrainingResult = strategy.train(model, data, context, fit_settings)
    bundle = ModelBundle.from_model(model.cpu(), target_spec(source, context), target.dataset.class_names, source.preprocessing)
    return Candidate(
        strategy=strategy_name,
        bundle=bundle,
        params=strategy.describe(),
        history=result.history_dicts(),
        val_accuracy=result.best_val_accuracy,
        val_loss=result.best_val_loss,
        best_epoch=result.best_epoch,
        seconds=result.seconds,
    )


def finetune_worker(payload: dict) -> dict:
    """One torchrun process of ``train_candidate``: the same training, on this process's share."""
    candidate = train_candidate(
        payload["strategy"], ModelBundle.from_state(payload["source"]), TargetSplits.from_state(payload["target"]),
        FinetuneSettings.model_validate(payload["settings"]),
    )
    return candidate.to_state()


@dataclass
class CandidateSet:
    """Every strategy's candidate from one fine-tuning step, in the configured order."""

    candidates: list[Candidate]

    def by_strategy(self, name: str) -> Candidate:
        for candidate in self.candidates:
            if candidate.strategy == name:
                return candidate
        raise KeyError(name)

    def to_state(self) -> dict:
        return {"candidates": [candidate.to_state() for candidate in self.candidates]}

    @classmethod
    def from_state(cls, state: dict) -> "CandidateSet":
        return cls([Candidate.from_state(item) for item in state["candidates"]])
