"""Feature transfer: the source extractor frozen, a new classifier head trained on its features."""

from __future__ import annotations

from pydantic import Field

from graft.models.architectures import Classifier
from graft.models.bundle import ModelBundle
from graft.strategies.base import StrategyParams, TransferContext, TransferStrategy, register_strategy, source_model_for_target
from graft.training.phases import Phase


class FeatureParams(StrategyParams):
    learning_rate: float = Field(1e-2, gt=0)


@register_strategy
class FeatureTransfer(TransferStrategy):
    name = "feature"
    description = "frozen source feature extractor, new linear head"
    Params = FeatureParams

    def build_model(self, source: ModelBundle, context: TransferContext) -> Classifier:
        return source_model_for_target(source, context, new_head=True)

    def phases(self, model: Classifier, epoch_scale: float) -> list[Phase]:
        """The head alone trains; ``fit`` leaves the rest frozen, BatchNorm statistics included."""
        group = {"params": list(model.head.parameters()), "lr": self.params.learning_rate, "weight_decay": self.params.weight_decay}
        return [Phase("head", self.scaled_epochs(self.params.epochs, epoch_scale), [group])]
