"""The interface every transfer strategy implements, and the registry that finds them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from graft.models.architectures import ArchitectureSpec, Classifier, build_classifier
from graft.models.bundle import ModelBundle
from graft.training.phases import Phase, Regularizer


class StrategyParams(BaseModel):
    """Hyper-parameters common to all strategies; subclasses add their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(60, ge=1)


@dataclass
class TransferContext:
    """What a strategy may know about the target while it builds and prepares its model."""

    class_names: list[str]
    same_label_set: bool
    adaptation_inputs: torch.Tensor  # normalised target images without labels (train + unlabelled pool)
    device: torch.device


class TransferStrategy(ABC):
    """Builds a target model from the source, says what trains how, and what else is penalised."""

    name: ClassVar[str]
    description: ClassVar[str]
    uses_source_weights: ClassVar[bool] = True
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: StrategyParams):
        self.params = params
        self.notes: list[str] = []  # what this run did differently from the description, and why

    @abstractmethod
    def build_model(self, source: ModelBundle, context: TransferContext) -> Classifier:
        """A model for the target, on the CPU; the source bundle is never modified."""

    @abstractmethod
    def phases(self, model: Classifier, epoch_scale: float) -> list[Phase]:
        """The training schedule: trainable parameter groups and learning rates per phase."""

    def prepare(self, model: Classifier, context: TransferContext) -> None:
        """Adjust the model with unlabelled target images before training (default: nothing)."""

    def regularizer(self, model: Classifier) -> Regularizer | None:
        """An extra loss term added to cross-entropy at every step (default: none)."""
        return None

    def scaled_epochs(self, epochs: int, epoch_scale: float) -> int:
        return max(1, round(epochs * epoch_scale))

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, **self.params.model_dump(), **({"notes": list(self.notes)} if self.notes else {})}


def source_model_for_target(source: ModelBundle, context: TransferContext, new_head: bool) -> Classifier:
    """The source weights in a model whose head fits the target's classes.

    The source head is kept only when the label sets match and ``new_head`` is false.
    """
    model = source.build_model()
    if new_head or not context.same_label_set:
        model.replace_head(len(context.class_names))
    return model


def target_spec(source: ModelBundle, context: TransferContext) -> ArchitectureSpec:
    return source.spec.model_copy(update={"num_classes": len(context.class_names)})


def fresh_model(source: ModelBundle, context: TransferContext) -> Classifier:
    return build_classifier(target_spec(source, context))


_REGISTRY: dict[str, type[TransferStrategy]] = {}


def register_strategy(cls: type[TransferStrategy]) -> type[TransferStrategy]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two strategies are named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def available_strategies() -> list[str]:
    return sorted(_REGISTRY)


def strategy_class(name: str) -> type[TransferStrategy]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(available_strategies())}")
    return _REGISTRY[name]


def create_strategy(name: str, params: dict[str, Any] | None = None) -> TransferStrategy:
    cls = strategy_class(name)
    return cls(cls.Params.model_validate(params or {}))
