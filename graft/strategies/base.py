"""The interface every transfer strategy implements, and the registry that finds them."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from graft.data.dataset import Images
from graft.data.preprocessing import PreprocessingSpec
from graft.models.architectures import ArchitectureSpec, Classifier, build_classifier
from graft.models.bundle import ModelBundle
from graft.training.loop import TrainingData, TrainingResult, fit
from graft.training.phases import Phase, Regularizer
from graft.training.settings import AugmentationConfig, ComputeConfig

if TYPE_CHECKING:
    from graft.config import DataConfig

MAX_SEARCH_CANDIDATES = 8


class StrategyParams(BaseModel):
    """Hyper-parameters common to all strategies; subclasses add their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(60, ge=1)
    search: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Values to try per parameter, e.g. {l2sp_alpha: [0, 0.1]}: one candidate per combination (at most "
        f"{MAX_SEARCH_CANDIDATES}), the best on the validation split kept (accuracy, then validation loss).",
    )

    @model_validator(mode="after")
    def _search_is_valid(self) -> "StrategyParams":
        for key, values in self.search.items():
            if key == "search" or key not in type(self).model_fields:
                raise ValueError(f"search.{key}: not a parameter of this strategy")
            if not isinstance(values, list) or not values:
                raise ValueError(f"search.{key}: give a non-empty list of values")
        if len(self.search_grid()) > MAX_SEARCH_CANDIDATES:
            raise ValueError(f"search: {len(self.search_grid())} combinations; at most {MAX_SEARCH_CANDIDATES}")
        for values in self.search_grid() if self.search else []:
            type(self).model_validate({**self.model_dump(exclude={"search"}), **values})  # each combination must be valid
        return self

    def search_grid(self) -> list[dict[str, Any]]:
        """Every combination of the searched values (one empty combination when nothing is searched)."""
        keys = list(self.search)
        return [dict(zip(keys, combination)) for combination in itertools.product(*(self.search[key] for key in keys))]

    def with_values(self, values: dict[str, Any]) -> "StrategyParams":
        """These parameters with ``values`` set and nothing left to search."""
        return type(self).model_validate({**self.model_dump(exclude={"search"}), **values})


@dataclass
class TransferContext:
    """What a strategy may know about the target while it builds and prepares its model."""

    class_names: list[str]
    same_label_set: bool
    adaptation_inputs: torch.Tensor  # normalised target images without labels (train + unlabelled pool)
    device: torch.device
    # uint8 images of the unlabelled pool (the training pool beyond the label budget), never their labels:
    # a shard view (read a batch at a time) or a tensor
    unlabeled_images: Images = field(default_factory=lambda: torch.zeros((0, 1, 1, 1), dtype=torch.uint8))


@dataclass
class FitSettings:
    """How the run trains a candidate: the configured batch, patience, schedule scale and augmentation."""

    preprocessing: PreprocessingSpec
    batch_size: int
    patience: int
    epoch_scale: float
    generator: torch.Generator
    data: DataConfig
    augmentation: AugmentationConfig
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    compute: ComputeConfig | None = None


class TransferStrategy(ABC):
    """Builds a target model from the source, says what trains how, and what else is penalised."""

    name: ClassVar[str]
    description: ClassVar[str]
    learns_without_labels: ClassVar[bool] = False  # trains with labels_per_class 0 (from the unlabelled pool)
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

    def train(self, model: Classifier, data: TrainingData, context: TransferContext, settings: FitSettings) -> TrainingResult:
        """Train ``model`` in place on the labelled images; the best-validation weights are kept.

        The default is the shared loop over ``phases`` with ``regularizer``; a strategy that also
        learns from ``context.unlabeled_images`` overrides this.
        """
        return fit(
            model,
            data,
            self.phases(model, settings.epoch_scale),
            settings.preprocessing,
            batch_size=settings.batch_size,
            patience=settings.patience,
            generator=settings.generator,
            augment=settings.augment,
            regularizer=self.regularizer(model),
            label=self.name,
            compute=settings.compute,
        )

    def scaled_epochs(self, epochs: int, epoch_scale: float) -> int:
        return max(1, round(epochs * epoch_scale))

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, **self.params.model_dump(exclude={"search"}), **({"notes": list(self.notes)} if self.notes else {})}


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
