"""The baseline: the source architecture from random weights, trained on the target alone."""

from __future__ import annotations

from pydantic import Field

from graft.models.architectures import Classifier
from graft.models.bundle import ModelBundle
from graft.strategies.base import StrategyParams, TransferContext, TransferStrategy, fresh_model, register_strategy
from graft.training.phases import Phase


class ScratchParams(StrategyParams):
    learning_rate: float = Field(3e-3, gt=0)
    epochs: int = Field(100, ge=1)


@register_strategy
class Scratch(TransferStrategy):
    name = "scratch"
    description = "same architecture, random weights: the baseline that exposes negative transfer"
    Params = ScratchParams

    def build_model(self, source: ModelBundle, context: TransferContext) -> Classifier:
        return fresh_model(source, context)

    def phases(self, model: Classifier, epoch_scale: float) -> list[Phase]:
        group = {"params": list(model.parameters()), "lr": self.params.learning_rate, "weight_decay": self.params.weight_decay}
        return [Phase("train", self.scaled_epochs(self.params.epochs, epoch_scale), [group])]
