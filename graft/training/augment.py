"""Batched augmentation on tensors: no per-image PIL work in the training loop."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from graft.config import AugmentationConfig


@dataclass
class AugmentationDraw:
    """The random numbers of one batch, one row per image; a slice serves one process's share."""

    low_resolution: torch.Tensor | None  # bool per image, or None when low resolution is off
    low_resolution_size: int
    angle: torch.Tensor
    shear: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def rows(self, start: int, stop: int) -> "AugmentationDraw":
        chosen = None if self.low_resolution is None else self.low_resolution[start:stop]
        return AugmentationDraw(
            chosen, self.low_resolution_size, self.angle[start:stop], self.shear[start:stop], self.scale[start:stop], self.shift[start:stop]
        )


class BatchAugmenter:
    """Random affine (rotation, scale, shear, translation) and low-resolution rendering.

    Low-resolution rendering shrinks an image to a few pixels and scales it back, the way an 8x8
    scan of a digit looks once framed; it teaches a source model the target's blur.

    Drawing (``draw``) is separate from applying (``apply``) so that data-parallel processes draw
    for the whole global batch from the same generator and each applies its own rows: every image
    gets the transform it would get in single-process training.
    """

    def __init__(self, config: AugmentationConfig, generator: torch.Generator):
        self.config = config
        self.generator = generator

    def _uniform(self, count: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(count, generator=self.generator) * (high - low) + low

    def draw(self, count: int) -> AugmentationDraw:
        cfg = self.config
        chosen, size = None, 0
        if cfg.low_resolution_probability > 0:
            chosen = torch.rand(count, generator=self.generator) < cfg.low_resolution_probability
            if bool(chosen.any()):
                size = int(torch.randint(cfg.low_resolution_sizes[0], cfg.low_resolution_sizes[1] + 1, (1,), generator=self.generator))
        angle = self._uniform(count, -cfg.rotation_degrees, cfg.rotation_degrees) * math.pi / 180
        shear = self._uniform(count, -cfg.shear_degrees, cfg.shear_degrees) * math.pi / 180
        scale = self._uniform(count, *cfg.scale_range)
        shift = self._uniform(2 * count, -2 * cfg.translate_fraction, 2 * cfg.translate_fraction).view(count, 2)
        return AugmentationDraw(chosen, size, angle, shear, scale, shift)

    @staticmethod
    def _affine(batch: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        count = batch.shape[0]
        cos, sin, tan = torch.cos(draw.angle), torch.sin(draw.angle), torch.tan(draw.shear)
        theta = torch.zeros(count, 2, 3)
        theta[:, 0, 0] = cos / draw.scale
        theta[:, 0, 1] = (-sin + tan * cos) / draw.scale
        theta[:, 1, 0] = sin / draw.scale
        theta[:, 1, 1] = (cos + tan * sin) / draw.scale
        theta[:, :, 2] = draw.shift
        grid = F.affine_grid(theta.to(batch.device, non_blocking=True).to(batch.dtype), list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def _low_resolution(batch: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        if draw.low_resolution is None or not bool(draw.low_resolution.any()):
            return batch
        # indices from the CPU mask: boolean indexing on the device would wait for the GPU
        rows = draw.low_resolution.nonzero().squeeze(1).to(batch.device, non_blocking=True)
        small = F.interpolate(batch.index_select(0, rows), size=(draw.low_resolution_size,) * 2, mode="area")
        restored = F.interpolate(small, size=batch.shape[-2:], mode="bilinear", align_corners=False)
        return batch.index_copy(0, rows, restored)

    def apply(self, batch: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        """``batch`` is float in [0, 1], before normalisation, with one row of ``draw`` per image."""
        if not self.config.enabled or batch.shape[0] == 0:
            return batch
        return self._affine(self._low_resolution(batch, draw), draw)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.config.enabled or batch.shape[0] == 0:
            return batch
        return self.apply(batch, self.draw(batch.shape[0]))
