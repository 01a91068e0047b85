"""Batched augmentation on tensors: no per-image PIL work in the training loop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from graft.config import AugmentationConfig


class BatchAugmenter:
    """Random affine (rotation, scale, shear, translation) and low-resolution rendering.

    Low-resolution rendering shrinks an image to a few pixels and scales it back, the way an 8x8
    scan of a digit looks once framed; it teaches a source model the target's blur.
    """

    def __init__(self, config: AugmentationConfig, generator: torch.Generator):
        self.config = config
        self.generator = generator

    def _uniform(self, count: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(count, generator=self.generator) * (high - low) + low

    def _affine(self, batch: torch.Tensor) -> torch.Tensor:
        count = batch.shape[0]
        cfg = self.config
        angle = self._uniform(count, -cfg.rotation_degrees, cfg.rotation_degrees) * math.pi / 180
        shear = self._uniform(count, -cfg.shear_degrees, cfg.shear_degrees) * math.pi / 180
        scale = self._uniform(count, *cfg.scale_range)
        shift = self._uniform(2 * count, -2 * cfg.translate_fraction, 2 * cfg.translate_fraction).view(count, 2)
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        theta = torch.zeros(count, 2, 3)
        theta[:, 0, 0] = cos / scale
        theta[:, 0, 1] = (-sin + tan * cos) / scale
        theta[:, 1, 0] = sin / scale
        theta[:, 1, 1] = (cos + tan * sin) / scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta.to(batch.device), list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _low_resolution(self, batch: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        chosen = torch.rand(batch.shape[0], generator=self.generator) < cfg.low_resolution_probability
        if not bool(chosen.any()):
            return batch
        size = int(torch.randint(cfg.low_resolution_sizes[0], cfg.low_resolution_sizes[1] + 1, (1,), generator=self.generator))
        selected = batch[chosen.to(batch.device)]
        small = F.interpolate(selected, size=(size, size), mode="area")
        restored = F.interpolate(small, size=batch.shape[-2:], mode="bilinear", align_corners=False)
        out = batch.clone()
        out[chosen.to(batch.device)] = restored
        return out

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` is float in [0, 1], before normalisation."""
        if not self.config.enabled or batch.shape[0] == 0:
            return batch
        if self.config.low_resolution_probability > 0:
            batch = self._low_resolution(batch)
        return self._affine(batch)
