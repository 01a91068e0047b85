"""One training loop for pretraining and every transfer strategy.

Images stay uint8 tensors on the training device; each batch is cast, augmented and normalised
on the fly. Training runs in phases (e.g. linear probe, then fine-tune), each with its own
parameter groups; the weights with the best validation score are restored at the end.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from graft.data.preprocessing import PreprocessingSpec, normalise
from graft.training.freezing import train_mode

PROGRESS_ENV = "GRAFT_PROGRESS"


@dataclass
class Phase:
    """A stretch of training with fixed trainable parameters and learning rates."""

    name: str
    epochs: int
    param_groups: list[dict]
    frozen_batch_norm_statistics: bool = False
    warmup_fraction: float = 0.05


@dataclass
class EpochRecord:
    phase: str
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float


@dataclass
class TrainingResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    best_val_loss: float = math.inf
    seconds: float = 0.0
    images_seen: int = 0

    def history_dicts(self) -> list[dict]:
        return [asdict(record) for record in self.history]


@dataclass
class TrainingData:
    """Labelled training and validation images, uint8 on the training device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor

    def to(self, device: torch.device) -> "TrainingData":
        return TrainingData(*(tensor.to(device) for tensor in (self.train_images, self.train_labels, self.val_images, self.val_labels)))


Regularizer = Callable[[nn.Module], torch.Tensor]


def progress_enabled() -> bool:
    return os.environ.get(PROGRESS_ENV, "1") != "0"


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, preprocessing: PreprocessingSpec, batch_size: int = 512
) -> torch.Tensor:
    """Logits for uint8 ``images``, computed on the model's device, returned on the CPU."""
    device = next(model.parameters()).device
    switch_modes = not isinstance(model, torch.fx.GraphModule)  # exported graphs refuse .eval()
    was_training = model.training
    if switch_modes:
        model.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size].to(device, non_blocking=True)
        outputs.append(model(normalise(chunk, preprocessing)).float().cpu())
    if switch_modes:
        model.train(was_training)
    if not outputs:
        return torch.zeros((0, 0))
    return torch.cat(outputs)


def _evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, preprocessing: PreprocessingSpec) -> tuple[float, float]:
    if images.shape[0] == 0:
        return math.inf, 0.0
    logits = predict_logits(model, images, preprocessing)
    targets = labels.cpu()
    return float(F.cross_entropy(logits, targets)), float((logits.argmax(dim=1) == targets).float().mean())


def _cosine_with_warmup(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def fit(
    model: nn.Module,
    data: TrainingData,
    phases: list[Phase],
    preprocessing: PreprocessingSpec,
    *,
    batch_size: int,
    patience: int,
    generator: torch.Generator,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    regularizer: Regularizer | None = None,
    label: str = "train",
) -> TrainingResult:
    """Train ``model`` in place through ``phases``; restore the best-validation weights."""
    device = next(model.parameters()).device
    data = data.to(device)
    result = TrainingResult()
    best_state = copy.deepcopy(model.state_dict())
    count = data.train_images.shape[0]
    started = time.perf_counter()
    epoch_counter = 0
    for phase in phases:
        if phase.epochs <= 0 or not phase.param_groups:
            continue
        trainable = {id(parameter) for group in phase.param_groups for parameter in group["params"]}
        for parameter in model.parameters():
            parameter.requires_grad_(id(parameter) in trainable)
        optimizer = torch.optim.AdamW(phase.param_groups)
        steps_per_epoch = max(1, math.ceil(count / batch_size))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _cosine_with_warmup(phase.epochs * steps_per_epoch, phase.warmup_fraction)
        )
        stale_epochs = 0
        bar = tqdm(
            total=phase.epochs * steps_per_epoch,
            desc=f"{label}:{phase.name}",
            unit="batch",
            file=sys.stderr,
            disable=not progress_enabled(),
            dynamic_ncols=True,
            mininterval=0.5,
            leave=True,
        )
        for epoch in range(1, phase.epochs + 1):
            epoch_counter += 1
            train_mode(model, phase.frozen_batch_norm_statistics)
            order = torch.randperm(count, generator=generator).to(device)
            loss_sum, correct, seen = 0.0, 0, 0
            for start in range(0, count, batch_size):
                batch_index = order[start : start + batch_size]
                if batch_index.numel() < 2 and count >= 2:
                    bar.update(1)
                    continue  # a single image breaks BatchNorm in training mode
                pixels = data.train_images[batch_index].float().div_(255.0)
                if augment is not None:
                    pixels = augment(pixels)
                inputs = (pixels - preprocessing.mean) / preprocessing.std
                targets = data.train_labels[batch_index]
                logits = model(inputs)
                loss = F.cross_entropy(logits, targets)
                total = loss + regularizer(model) if regularizer is not None else loss
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += float(loss.detach()) * targets.shape[0]
                correct += int((logits.detach().argmax(dim=1) == targets).sum())
                seen += targets.shape[0]
                bar.update(1)
            result.images_seen += seen
            val_loss, val_accuracy = _evaluate(model, data.val_images, data.val_labels, preprocessing)
            record = EpochRecord(
                phase=phase.name,
                epoch=epoch_counter,
                train_loss=loss_sum / max(seen, 1),
                train_accuracy=correct / max(seen, 1),
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                learning_rate=optimizer.param_groups[0]["lr"],  # strategies list the head's group first
            )
            result.history.append(record)
            bar.set_postfix_str(
                f"epoch {epoch}/{phase.epochs} loss {record.train_loss:.3f} acc {record.train_accuracy:.3f} "
                f"val_acc {val_accuracy:.3f}",
                refresh=False,
            )
            improved = val_accuracy > result.best_val_accuracy or (
                val_accuracy == result.best_val_accuracy and val_loss < result.best_val_loss
            )
            if improved or not result.history[:-1]:
                result.best_val_accuracy, result.best_val_loss, result.best_epoch = val_accuracy, val_loss, epoch_counter
                best_state = copy.deepcopy(model.state_dict())
                stale_epochs = 0
            else:
                stale_epochs += 1
                if stale_epochs >= patience:
                    break
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    return result
