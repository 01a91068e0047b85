"""The loop shared by strategies that learn from unlabelled target images (``semi``, ``source_free``).

The labelled, validation and unlabelled images are read a batch at a time (shard views or
tensors), so the pool may be bigger than memory; only the batch in use is on the device. An epoch
is one pass over the unlabelled pool (or over the labelled images when the pool is empty). Each
step hands the strategy's ``step`` a batch of unlabelled images (uint8, with their pool indices)
and, when there are labelled images, a labelled batch drawn with replacement, so that one label
per class still fills a batch. The weights with the best validation score are kept;
with no labelled validation images, the lowest value of the strategy's unlabelled objective.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from graft.data.dataset import Images
from graft.data.preprocessing import PreprocessingSpec, standardise_
from graft.models.architectures import Classifier
from graft.strategies.base import FitSettings
from graft.training.freezing import train_mode
from graft.training.loop import EpochRecord, TrainingData, TrainingResult, _cosine_with_warmup, predict_logits, progress_enabled
from graft.training.phases import Phase, Regularizer


@dataclass
class Batch:
    """One step's images: labelled (uint8 and labels) when there are any, and unlabelled with their pool indices."""

    labelled_images: torch.Tensor | None
    labels: torch.Tensor | None
    unlabelled_images: torch.Tensor
    unlabelled_indices: torch.Tensor


# step(model, batch) -> (loss, logits of the labelled images or None)
Step = Callable[[Classifier, Batch], tuple[torch.Tensor, torch.Tensor | None]]


def to_inputs(pixels: torch.Tensor, preprocessing: PreprocessingSpec, augment: Callable | None) -> torch.Tensor:
    """uint8 images to normalised model inputs, through ``augment`` (float pixels in [0, 1]) when given."""
    floats = pixels.float().div_(255.0)
    if augment is not None and floats.shape[0]:
        floats = augment(floats)
    return standardise_(floats, preprocessing)


def fit_with_unlabelled(
    model: Classifier,
    data: TrainingData,
    unlabelled: Images,
    phases: list[Phase],
    settings: FitSettings,
    step: Step,
    *,
    unlabelled_per_step: int,
    label: str,
    regularizer: Regularizer | None = None,
    epoch_start: Callable[[Classifier], None] | None = None,
    unlabelled_objective: Callable[[Classifier], float] | None = None,
    start: TrainingResult | None = None,
) -> TrainingResult:
    """Train ``model`` in place through ``phases``; restore the best weights (see the module docstring).

    ``start`` is the result of an earlier training of ``model`` (whose best weights it holds now): its
    history continues, and its best score must be beaten for new weights to be kept.
    """
    result = TrainingResult.from_dict(start.to_dict()) if start is not None else TrainingResult()
    best = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    started = time.perf_counter()
    for phase in phases:
        if phase.epochs <= 0 or not phase.param_groups:
            continue
        _run_phase(model, data, unlabelled, phase, settings, step, unlabelled_per_step, label, regularizer,
                   epoch_start, unlabelled_objective, result, best)
    model.load_state_dict(best)
    model.eval()
    result.seconds = time.perf_counter() - started + (start.seconds if start is not None else 0.0)
    return result


def _run_phase(model, data, unlabelled, phase, settings, step, per_step, label, regularizer, epoch_start, objective, result, best) -> None:
    device = next(model.parameters()).device
    trainable = {id(parameter) for group in phase.param_groups for parameter in group["params"]}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trainable)
    optimizer = torch.optim.AdamW([dict(group) for group in phase.param_groups])
    pool = unlabelled.shape[0]
    steps = max(1, math.ceil(pool / per_step)) if pool else max(1, math.ceil(data.train_images.shape[0] / settings.batch_size))
    base_rates = [group["lr"] for group in optimizer.param_groups]
    schedule = _cosine_with_warmup(phase.epochs * steps, phase.warmup_fraction)
    bar = tqdm(total=phase.epochs * steps, desc=f"{label}:{phase.name}", unit="batch", file=sys.stderr,
               disable=not progress_enabled(), mininterval=0.5 if sys.stderr.isatty() else 15.0)
    stale, taken = 0, 0
    for _ in range(phase.epochs):
        if epoch_start is not None:
            epoch_start(model)
        train_mode(model, phase.frozen_batch_norm_statistics)
        order = torch.randperm(pool, generator=settings.generator)
        tick, loss_sum, correct, seen = time.perf_counter(), 0.0, 0.0, 0
        for index in range(steps):
            batch = _draw(data, unlabelled, order, index, per_step, settings, device)
            if batch is None:
                continue
            loss, logits = step(model, batch)
            if regularizer is not None:
                loss = loss + regularizer(model)
            for group, rate in zip(optimizer.param_groups, base_rates, strict=True):
                group["lr"] = rate * schedule(taken)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            taken += 1
            loss_sum += float(loss.detach())
            if logits is not None:
                correct += float((logits.detach().argmax(dim=1) == batch.labels).float().mean())
            seen += 1
            bar.update(1)
        result.train_seconds += time.perf_counter() - tick
        improved = _validate(model, data, settings, objective, result, phase, loss_sum / max(seen, 1), correct / max(seen, 1), optimizer)
        if improved:
            for name, tensor in model.state_dict().items():
                best[name].copy_(tensor)
            stale = 0
        else:
            stale += 1
            if stale >= settings.patience:
                break
    bar.close()


def _draw(data: TrainingData, unlabelled: Images, order: torch.Tensor, index: int, per_step: int, settings: FitSettings,
          device: torch.device) -> Batch | None:
    """The step's batches, gathered (from shards or tensors) and moved to ``device``."""
    chosen = order[index * per_step : (index + 1) * per_step]
    labelled_count = data.train_images.shape[0]
    if chosen.numel() < 2 and labelled_count < 2:
        return None  # a single image breaks BatchNorm in training mode
    images = labels = None
    if labelled_count:
        rows = torch.randint(labelled_count, (settings.batch_size,), generator=settings.generator)
        images, labels = data.train_images[rows].to(device), data.train_labels[rows.to(data.train_labels.device)].to(device)
    return Batch(images, labels, unlabelled[chosen].to(device), chosen.to(device))


def _validate(model, data, settings, objective, result, phase, train_loss, train_accuracy, optimizer) -> bool:
    """Score this epoch, record it, and say whether it is the best so far."""
    tick = time.perf_counter()
    if data.val_images.shape[0]:
        logits = predict_logits(model, data.val_images, settings.preprocessing, compute=settings.compute)
        targets = data.val_labels.cpu()
        val_loss, val_accuracy = float(F.cross_entropy(logits, targets)), float((logits.argmax(dim=1) == targets).float().mean())
    else:
        val_loss, val_accuracy = (objective(model) if objective is not None else train_loss), 0.0
    result.val_seconds += time.perf_counter() - tick
    record = EpochRecord(phase.name, len(result.history) + 1, train_loss, train_accuracy, val_loss, val_accuracy,
                         optimizer.param_groups[0]["lr"])
    result.history.append(record)
    improved = len(result.history) == 1 or val_accuracy > result.best_val_accuracy or (
        val_accuracy == result.best_val_accuracy and val_loss < result.best_val_loss
    )
    if improved:
        result.best_val_accuracy, result.best_val_loss, result.best_epoch = val_accuracy, val_loss, record.epoch
    return improved
