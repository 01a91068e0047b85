"""What a strategy hands the training loop: its phases and an optional extra loss term."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Phase:
    """A stretch of training with fixed trainable parameters and learning rates."""

    name: str
    epochs: int
    param_groups: list[dict]
    frozen_batch_norm_statistics: bool = False
    warmup_fraction: float = 0.05


Regularizer = Callable[[nn.Module], torch.Tensor]
