"""Adaptive transfer: keep the source extractor and classifier, and adapt both, carefully.

Four ingredients, each switchable: BatchNorm statistics re-estimated on unlabelled target
images (AdaBN); a linear-probe phase before fine-tuning (LP-FT), so a poorly fitting head does
not distort the features; learning rates that shrink with depth from the head (layer-wise
decay); and an L2-SP penalty that keeps the weights near their source values.

A backbone without BatchNorm (a ViT, whose LayerNorm normalises each token by its own
statistics) has no running statistics to re-estimate: the AdaBN step is skipped, says so in the
run's log and in the candidate's parameters, and the other three ingredients apply unchanged.
"""

from __future__ import annotations

import logging

from pydantic import Field

from graft.models.architectures import Classifier
from graft.models.bundle import ModelBundle
from graft.strategies.base import StrategyParams, TransferContext, TransferStrategy, register_strategy, source_model_for_target
from graft.strategies.regularizers import L2SP
from graft.training.batchnorm import reestimate_batch_norm
from graft.training.freezing import BATCH_NORM_TYPES, freeze
from graft.training.phases import Phase, Regularizer


class AdaptiveParams(StrategyParams):
    learning_rate: float = Field(2e-3, gt=0, description="Learning rate of the head in the fine-tune phase.")
    epochs: int = Field(60, ge=1, description="Fine-tune epochs after the linear probe.")
    weight_decay: float = Field(0.0, ge=0, description="Plain decay; L2-SP does the regularising.")
    probe_epochs: int = Field(15, ge=0, description="Head-only epochs before fine-tuning (0 disables LP-FT).")
    probe_learning_rate: float = Field(1e-2, gt=0)
    layer_decay: float = Field(0.5, gt=0, le=1, description="Each stage below the head gets this times the LR above it.")
    l2sp_alpha: float = Field(0.1, ge=0, description="Pull toward the source weights.")
    l2sp_beta: float = Field(1e-4, ge=0, description="Plain L2 on a head that is new.")
    reestimate_batch_norm: bool = True
    freeze_batch_norm_statistics: bool = Field(
        False, description="Keep the re-estimated statistics fixed while fine-tuning (off: they keep adapting)."
    )


@register_strategy
class AdaptiveTransfer(TransferStrategy):
    name = "adaptive"
    description = (
        "source extractor and head kept; AdaBN (skipped on backbones without BatchNorm, e.g. ViT), LP-FT, "
        "layer-wise LR decay and L2-SP"
    )
    Params = AdaptiveParams

    def build_model(self, source: ModelBundle, context: TransferContext) -> Classifier:
        model = source_model_for_target(source, context, new_head=False)
        self._source_names = {
            name
            for name, _ in model.named_parameters()
            if context.same_label_set or not name.startswith("head.")
        }
        return model

    def prepare(self, model: Classifier, context: TransferContext) -> None:
        if self.params.reestimate_batch_norm:
            reestimate_batch_norm(model, context.adaptation_inputs.to(context.device))
            if not any(isinstance(module, BATCH_NORM_TYPES) for module in model.modules()):
                note = ("AdaBN skipped: the backbone has no BatchNorm layers (LayerNorm normalises each token itself); "
                        "LP-FT, layer-wise LR decay and L2-SP apply")
                self.notes.append(note)
                logging.getLogger(__name__).warning("adaptive: %s", note)

    def phases(self, model: Classifier, epoch_scale: float) -> list[Phase]:
        params = self.params
        phases = []
        if params.probe_epochs > 0:
            phases.append(
                Phase(
                    "probe",
                    self.scaled_epochs(params.probe_epochs, epoch_scale),
                    [{"params": list(model.head.parameters()), "lr": params.probe_learning_rate, "weight_decay": params.weight_decay}],
                    frozen_batch_norm_statistics=params.freeze_batch_norm_statistics,
                )
            )
        phases.append(
            Phase(
                "finetune",
                self.scaled_epochs(params.epochs, epoch_scale),
                self.decayed_groups(model, params.learning_rate),
                frozen_batch_norm_statistics=params.freeze_batch_norm_statistics,
            )
        )
        return phases

    def decayed_groups(self, model: Classifier, learning_rate: float) -> list[dict]:
        """One parameter group per stage, the head at ``learning_rate``, each stage below at ``layer_decay`` times the one above."""
        groups = []
        for depth, stage in enumerate(reversed(model.layer_groups())):
            stage_params = list(stage.parameters())
            if stage_params:
                lr = learning_rate * self.params.layer_decay**depth
                groups.append({"params": stage_params, "lr": lr, "weight_decay": self.params.weight_decay})
        return groups

    def regularizer(self, model: Classifier) -> Regularizer | None:
        if self.params.l2sp_alpha == 0 and self.params.l2sp_beta == 0:
            return None
        device = next(model.parameters()).device
        return L2SP(model, self._source_names, self.params.l2sp_alpha, self.params.l2sp_beta).to(device)
