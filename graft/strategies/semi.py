"""Semi-supervised transfer: the adaptive recipe, then FixMatch on the unlabelled target pool.

The adaptive recipe trains first (AdaBN, linear probe, layer-wise decayed fine-tuning, L2-SP).
FixMatch then continues from its best weights for ``unlabelled_epochs`` passes over the pool, at
``unlabelled_learning_rate`` with the same layer-wise decay and L2-SP; its weights are kept only
where they beat the adaptive ones on the validation split. Every FixMatch step also draws ``unlabelled_ratio`` unlabelled images per labelled one. The model's
prediction on a weakly augmented view (the run's own augmentation) becomes the pseudo-label of a
strongly augmented view of the same image (larger affine changes, brightness and contrast
jitter, a cut-out square) when its confidence reaches ``threshold``; those pseudo-labels add
``unlabelled_weight`` times their cross-entropy to the loss. Labelled and unlabelled images go
through one forward pass, so BatchNorm sees the target pool as it trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from graft.data.preprocessing import standardise_
from graft.models.architectures import Classifier
from graft.strategies.adaptive import AdaptiveParams, AdaptiveTransfer
from graft.strategies.base import FitSettings, TransferContext, register_strategy
from graft.strategies.unlabelled import Batch, fit_with_unlabelled, to_inputs
from graft.training.augment import make_augmenter
from graft.training.loop import TrainingData, TrainingResult
from graft.training.phases import Phase


class SemiParams(AdaptiveParams):
    unlabelled_epochs: int = Field(10, ge=1, description="FixMatch epochs after the adaptive recipe; one epoch is one pass over the pool.")
    unlabelled_learning_rate: float = Field(1e-3, gt=0, description="FixMatch learning rate of the head (lower stages decay).")
    threshold: float = Field(0.9, gt=0, le=1, description="Confidence a weak-view prediction needs to become a pseudo-label.")
    unlabelled_ratio: int = Field(3, ge=1, le=16, description="Unlabelled images per labelled image in each batch.")
    unlabelled_weight: float = Field(1.0, ge=0, description="Weight of the pseudo-label loss.")
    cutout_fraction: float = Field(0.4, ge=0, lt=1, description="Side of the strong view's cut-out square, as a fraction of the image.")


def strong_view(pixels: torch.Tensor, augment, generator: torch.Generator, cutout: float) -> torch.Tensor:
    """``augment`` (a strong affine or crop), then per-image brightness and contrast jitter and a cut-out square."""
    count = pixels.shape[0]
    if augment is not None:
        pixels = augment(pixels)
    contrast = (torch.rand(count, 1, 1, 1, generator=generator) * 0.8 + 0.6).to(pixels.device)
    brightness = ((torch.rand(count, 1, 1, 1, generator=generator) - 0.5) * 0.4).to(pixels.device)
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
    pixels = ((pixels - mean) * contrast + mean + brightness).clamp_(0, 1)
    if cutout > 0:
        height, width = pixels.shape[-2:]
        side = max(1, int(cutout * min(height, width)))
        top = torch.randint(0, height - side + 1, (count,), generator=generator)
        left = torch.randint(0, width - side + 1, (count,), generator=generator)
        rows = torch.arange(height).view(1, height, 1)
        cols = torch.arange(width).view(1, 1, width)
        inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + side).view(-1, 1, 1))
                  & (cols >= left.view(-1, 1, 1)) & (cols < (left + side).view(-1, 1, 1)))
        pixels = pixels.masked_fill(inside.unsqueeze(1).to(pixels.device), 0.5)
    return pixels


@register_strategy
class SemiSupervised(AdaptiveTransfer):
    name = "semi"
    description = (
        "adaptive recipe plus FixMatch on the unlabelled target pool: confident weak-view predictions train strong views"
    )
    Params = SemiParams

    def train(self, model: Classifier, data: TrainingData, context: TransferContext, settings: FitSettings) -> TrainingResult:
        adapted = super().train(model, data, context, settings)
        if context.unlabeled_images.shape[0] < 2:
            return adapted
        params = self.params
        weak = settings.augment
        strong_config = settings.augmentation.model_copy(
            update={"rotation_degrees": 25.0, "scale_range": (0.8, 1.2), "translate_fraction": 0.15, "shear_degrees": 15.0,
                    "low_resolution_probability": 0.3, "enabled": True}
        )
        strong = make_augmenter(settings.data, strong_config, settings.generator)

        def step(model: Classifier, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
            pixels = batch.unlabelled_images.float().div_(255.0)
            views = [standardise_(weak(pixels.clone()) if weak else pixels.clone(), settings.preprocessing),
                     standardise_(strong_view(pixels, strong, settings.generator, params.cutout_fraction), settings.preprocessing)]
            labelled = batch.labelled_images is not None
            if labelled:
                views.insert(0, to_inputs(batch.labelled_images, settings.preprocessing, weak))
            logits = model(torch.cat(views))
            count = batch.unlabelled_images.shape[0]
            labelled_logits = logits[: logits.shape[0] - 2 * count] if labelled else None
            weak_logits, strong_logits = logits[logits.shape[0] - 2 * count :].split(count)
            confidence, pseudo = F.softmax(weak_logits.detach().float(), dim=1).max(dim=1)
            mask = (confidence >= params.threshold).float()
            loss = params.unlabelled_weight * (F.cross_entropy(strong_logits.float(), pseudo, reduction="none") * mask).mean()
            if labelled:
                loss = loss + F.cross_entropy(labelled_logits.float(), batch.labels)
            return loss, labelled_logits

        fixmatch = Phase("fixmatch", self.scaled_epochs(params.unlabelled_epochs, settings.epoch_scale),
                         self.decayed_groups(model, params.unlabelled_learning_rate),
                         frozen_batch_norm_statistics=params.freeze_batch_norm_statistics)
        return fit_with_unlabelled(
            model, data, context.unlabeled_images, [fixmatch], settings, step, unlabelled_per_step=settings.batch_size * params.unlabelled_ratio,
            label=self.name, regularizer=self.regularizer(model), start=adapted,
        )
