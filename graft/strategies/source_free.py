"""Source-free adaptation (SHOT): adapt the source feature extractor to the unlabelled target.

The source classifier head stays fixed; the extractor learns by information maximisation on the
unlabelled pool (each prediction confident, the predictions together spread over the classes),
plus ``pseudo_label_weight`` times the cross-entropy on pseudo-labels from clustering: at each
epoch the pool's features are grouped around class centroids (cosine distance, centroids weighted
by the predictions, then refined once), and each image takes its nearest centroid's class. It
needs no target label: with ``labels_per_class: 0`` it is the strategy that learns. Labelled
images, when there are some, add their cross-entropy. With no labelled validation images the
weights with the lowest unlabelled objective are kept.

The fixed head must know the target's classes: when the target's label set is not the source's,
a new head is first fitted on the labelled images, so at least one label per class is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from graft.data.preprocessing import normalise
from graft.data.shards import iter_batches
from graft.errors import ConfigError
from graft.models.architectures import Classifier
from graft.models.bundle import ModelBundle
from graft.strategies.base import (
    FitSettings,
    StrategyParams,
    TransferContext,
    TransferStrategy,
    register_strategy,
    source_model_for_target,
)
from graft.strategies.unlabelled import Batch, fit_with_unlabelled, to_inputs
from graft.training.batchnorm import reestimate_batch_norm
from graft.training.loop import TrainingData, TrainingResult
from graft.training.phases import Phase


class SourceFreeParams(StrategyParams):
    learning_rate: float = Field(1e-3, gt=0, description="Learning rate of the feature extractor.")
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(15, ge=1, description="Adaptation epochs; an epoch is one pass over the unlabelled pool.")
    probe_epochs: int = Field(15, ge=0, description="Head epochs on the labelled images when the target's classes are new.")
    probe_learning_rate: float = Field(1e-2, gt=0)
    pseudo_label_weight: float = Field(0.3, ge=0, description="Weight of the clustered pseudo-labels' cross-entropy (0: SHOT-IM).")
    diversity_weight: float = Field(1.0, ge=0, description="Weight of the spread of the mean prediction over the classes.")
    unlabelled_batch: int = Field(64, ge=2, description="Unlabelled images per step.")
    reestimate_batch_norm: bool = True


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    return -(probabilities * torch.log(probabilities + 1e-6)).sum(dim=-1)


def information_loss(logits: torch.Tensor, diversity_weight: float) -> torch.Tensor:
    """Mean per-image entropy minus the entropy of the mean prediction: low when confident and diverse."""
    probabilities = F.softmax(logits.float(), dim=1)
    return entropy(probabilities).mean() - diversity_weight * entropy(probabilities.mean(dim=0))


def cluster_labels(features: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """SHOT's pseudo-labels: cosine nearest class centroid, centroids weighted by the predictions, refined once."""
    features = torch.cat([features, torch.ones(features.shape[0], 1)], dim=1)
    features = features / features.norm(dim=1, keepdim=True)
    weights = probabilities
    labels = probabilities.argmax(dim=1)
    for _ in range(2):
        centroids = weights.t() @ features / (weights.sum(dim=0)[:, None] + 1e-8)
        centroids = centroids / (centroids.norm(dim=1, keepdim=True) + 1e-8)
        labels = (features @ centroids.t()).argmax(dim=1)
        weights = F.one_hot(labels, probabilities.shape[1]).float()
    return labels


@register_strategy
class SourceFree(TransferStrategy):
    name = "source_free"
    description = "SHOT: source head kept fixed, extractor adapted by information maximisation and clustered pseudo-labels"
    learns_without_labels = True
    Params = SourceFreeParams

    def build_model(self, source: ModelBundle, context: TransferContext) -> Classifier:
        self._new_head = not context.same_label_set  # source_model_for_target replaces the head then
        return source_model_for_target(source, context, new_head=False)

    def prepare(self, model: Classifier, context: TransferContext) -> None:
        if self.params.reestimate_batch_norm:
            reestimate_batch_norm(model, context.adaptation_inputs.to(context.device))

    def phases(self, model: Classifier, epoch_scale: float) -> list[Phase]:
        params = self.params
        phases = []
        if self._new_head and params.probe_epochs > 0:
            head = {"params": list(model.head.parameters()), "lr": params.probe_learning_rate, "weight_decay": params.weight_decay}
            phases.append(Phase("probe", self.scaled_epochs(params.probe_epochs, epoch_scale), [head]))
        extractor = {"params": list(model.backbone.parameters()), "lr": params.learning_rate, "weight_decay": params.weight_decay}
        phases.append(Phase("adapt", self.scaled_epochs(params.epochs, epoch_scale), [extractor]))
        return phases

    def train(self, model: Classifier, data: TrainingData, context: TransferContext, settings: FitSettings) -> TrainingResult:
        if self._new_head and data.train_images.shape[0] == 0:
            raise ConfigError(
                "finetune.strategies.source_free: the target's classes are not the source's, so the source head cannot "
                "label them; give data.labels_per_class at least 1, or leave source_free out"
            )
        params = self.params
        pool = context.unlabeled_images
        state = {"labels": torch.zeros(pool.shape[0], dtype=torch.int64)}

        def pool_outputs(model: Classifier) -> tuple[torch.Tensor, torch.Tensor]:
            model.eval()
            with torch.inference_mode():
                features = torch.cat([model.features(normalise(chunk.to(context.device), settings.preprocessing)).float().cpu()
                                      for chunk in iter_batches(pool, 512)])
                logits = model.head(features.to(context.device)).float().cpu()
            return features, logits

        def relabel(model: Classifier) -> None:
            if pool.shape[0] and params.pseudo_label_weight > 0:
                features, logits = pool_outputs(model)
                state["labels"] = cluster_labels(features, F.softmax(logits, dim=1)).to(context.device)

        def objective(model: Classifier) -> float:
            return float(information_loss(pool_outputs(model)[1], params.diversity_weight)) if pool.shape[0] else 0.0

        def step(model: Classifier, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
            adapting = any(parameter.requires_grad for parameter in model.backbone.parameters())
            labelled = batch.labelled_images is not None
            views = [to_inputs(batch.labelled_images, settings.preprocessing, settings.augment)] if labelled else []
            count = batch.unlabelled_images.shape[0] if adapting else 0
            if count:
                views.append(to_inputs(batch.unlabelled_images, settings.preprocessing, settings.augment))
            logits = model(torch.cat(views))
            labelled_logits = logits[: logits.shape[0] - count] if labelled else None
            loss = F.cross_entropy(labelled_logits.float(), batch.labels) if labelled else logits.sum() * 0.0
            if count:
                unlabelled_logits = logits[logits.shape[0] - count :]
                loss = loss + information_loss(unlabelled_logits, params.diversity_weight)
                if params.pseudo_label_weight > 0:
                    pseudo = state["labels"][batch.unlabelled_indices]
                    loss = loss + params.pseudo_label_weight * F.cross_entropy(unlabelled_logits.float(), pseudo)
            return loss, labelled_logits

        return fit_with_unlabelled(
            model, data, pool, self.phases(model, settings.epoch_scale), settings, step,
            unlabelled_per_step=params.unlabelled_batch, label=self.name, epoch_start=relabel, unlabelled_objective=objective,
        )
