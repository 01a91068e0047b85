"""Fine-tuning regularisers, each a small ``nn.Module`` called with the model being trained."""

from __future__ import annotations

import torch
from torch import nn


class L2SP(nn.Module):
    """L2-SP (Li et al., 2018): pull shared weights toward their source values.

    ``alpha/2 * ||w - w_source||^2`` over the parameters that came from the source, plus
    ``beta/2 * ||w||^2`` over new parameters (a head re-initialised for the target).
    """

    def __init__(self, model: nn.Module, source_names: set[str], alpha: float, beta: float):
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.source_names = sorted(source_names)
        for index, name in enumerate(self.source_names):
            self.register_buffer(f"anchor_{index}", dict(model.named_parameters())[name].detach().clone())

    def forward(self, model: nn.Module) -> torch.Tensor:
        parameters = dict(model.named_parameters())
        anchored = torch.zeros((), device=next(model.parameters()).device)
        for index, name in enumerate(self.source_names):
            anchored = anchored + (parameters[name] - getattr(self, f"anchor_{index}")).pow(2).sum()
        new = torch.zeros_like(anchored)
        for name, parameter in parameters.items():
            if name not in self.source_names and parameter.requires_grad:
                new = new + parameter.pow(2).sum()
        return 0.5 * self.alpha * anchored + 0.5 * self.beta * new
