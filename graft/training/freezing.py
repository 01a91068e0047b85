"""Freezing parts of a model, in the manner of Lightning's fine-tuning callbacks.

A frozen module gets no gradients and, for BatchNorm, keeps its running statistics: its layers
stay in eval mode while the rest of the model trains.
"""

from __future__ import annotations

from torch import nn

BATCH_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def freeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def unfreeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(True)


def train_mode(model: nn.Module, frozen_batch_norm_statistics: bool = False) -> None:
    """``model.train()``, except BatchNorm layers that are frozen or whose statistics are pinned."""
    model.train()
    for module in model.modules():
        if isinstance(module, BATCH_NORM_TYPES):
            frozen = not any(parameter.requires_grad for parameter in module.parameters())
            if frozen or frozen_batch_norm_statistics:
                module.eval()
