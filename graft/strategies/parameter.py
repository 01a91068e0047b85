"""Parameter transfer: start from every source weight and fine-tune the whole model."""

from __future__ import annotations

from graft.models.architectures import Classifier
from graft.models.bundle import ModelBundle
from graft.strategies.base import TransferContext, TransferStrategy, register_strategy, source_model_for_target
from graft.training.phases import Phase


@register_strategy
class ParameterTransfer(TransferStrategy):
    name = "parameter"
    description = "all source weights, everything fine-tuned at one learning rate"

    def build_model(self, source: ModelBundle, context: TransferContext) -> Classifier:
        return source_model_for_target(source, context, new_head=False)

    def phases(self, model: Classifier, epoch_scale: float) -> list[Phase]:
        group = {"params": list(model.parameters()), "lr": self.params.learning_rate, "weight_decay": self.params.weight_decay}
        return [Phase("finetune", self.scaled_epochs(self.params.epochs, epoch_scale), [group])]
