"""Re-estimate BatchNorm statistics on new data (AdaBN), without labels and without gradients."""

from __future__ import annotations

import torch
from torch import nn

from graft.training.freezing import BATCH_NORM_TYPES


@torch.no_grad()
def reestimate_batch_norm(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> int:
    """Replace every BatchNorm layer's running mean and variance by those of ``inputs``.

    ``inputs`` is the already-normalised float batch. Returns the number of layers updated.
    """
    layers = [module for module in model.modules() if isinstance(module, BATCH_NORM_TYPES)]
    if not layers or inputs.shape[0] < 2:
        return 0
    was_training = model.training
    momenta = {layer: layer.momentum for layer in layers}
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over all batches
    model.train()
    for start in range(0, inputs.shape[0], batch_size):
        chunk = inputs[start : start + batch_size]
        if chunk.shape[0] > 1:
            model(chunk)
    for layer, momentum in momenta.items():
        layer.momentum = momentum
    model.train(was_training)
    return len(layers)
