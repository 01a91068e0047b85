"""Batched augmentation on tensors: no per-image PIL work in the training loop."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from graft.training.settings import AugmentationConfig

if TYPE_CHECKING:
    from graft.config import DataConfig
    from graft.stage_settings import SourceData


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

    on_uint8 = False  # gets float pixels in [0, 1]

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


@dataclass
class CropDraw:
    """Per image: the crop box in the stored frame (top, left, height, width) and a flip."""

    boxes: torch.Tensor  # (N, 4) int64
    flip: torch.Tensor  # (N,) bool

    def rows(self, start: int, stop: int) -> "CropDraw":
        return CropDraw(self.boxes[start:stop], self.flip[start:stop])


class PhotoAugmenter(BatchAugmenter):
    """Photo geometry's training view: torchvision's RandomResizedCrop (scale ``crop_scale``,
    aspect ratio 3/4..4/3) to ``crop_size`` and a horizontal flip, per image of the batch with
    ``torchvision.transforms.v2`` on the batch's device. With augmentation off, the centre crop
    that evaluation sees. Same ``draw``/``apply`` protocol as ``BatchAugmenter``, so
    data-parallel processes draw for the global batch from one generator."""

    RATIO = (3 / 4, 4 / 3)
    on_uint8 = True  # crops, resizes and flips the stored uint8 pixels, before the cast to float

    def __init__(self, config: AugmentationConfig, generator: torch.Generator, frame_size: int, crop_size: int):
        super().__init__(config, generator)
        self.frame_size, self.crop_size = frame_size, crop_size

    def _box(self) -> list[int]:
        """torchvision's ``RandomResizedCrop.get_params``, drawing from this augmenter's generator."""
        size = self.frame_size
        area = size * size
        log_ratio = (math.log(self.RATIO[0]), math.log(self.RATIO[1]))
        for _ in range(10):
            target = area * float(self._uniform(1, *self.config.crop_scale))
            aspect = math.exp(float(self._uniform(1, *log_ratio)))
            width, height = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < width <= size and 0 < height <= size:
                top = int(torch.randint(0, size - height + 1, (1,), generator=self.generator))
                left = int(torch.randint(0, size - width + 1, (1,), generator=self.generator))
                return [top, left, height, width]
        return [0, 0, size, size]

    def draw(self, count: int) -> CropDraw:  # type: ignore[override]
        if not self.config.enabled:
            offset = (self.frame_size - self.crop_size) // 2
            boxes = torch.tensor([[offset, offset, self.crop_size, self.crop_size]] * count, dtype=torch.int64)
            return CropDraw(boxes.view(count, 4), torch.zeros(count, dtype=torch.bool))
        boxes = torch.tensor([self._box() for _ in range(count)], dtype=torch.int64).view(count, 4)
        flip = torch.rand(count, generator=self.generator) < (0.5 if self.config.horizontal_flip else 0.0)
        return CropDraw(boxes, flip)

    def apply(self, batch: torch.Tensor, draw: CropDraw) -> torch.Tensor:  # type: ignore[override]
        from torchvision.transforms.v2 import functional as TF

        if batch.shape[0] == 0:
            return batch[..., : self.crop_size, : self.crop_size]
        out = [
            TF.resized_crop(image, *box, [self.crop_size, self.crop_size], antialias=True)
            for image, box in zip(batch, draw.boxes.tolist())
        ]
        crops = torch.stack(out)
        if bool(draw.flip.any()):
            rows = draw.flip.nonzero().squeeze(1).to(crops.device, non_blocking=True)
            crops = crops.index_copy(0, rows, TF.horizontal_flip(crops.index_select(0, rows)))
        return crops

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.apply(batch, self.draw(batch.shape[0]))


def make_augmenter(data: DataConfig | SourceData, config: AugmentationConfig, generator: torch.Generator) -> BatchAugmenter | None:
    """The training view for the data's geometry; None when there is nothing to do."""
    if data.geometry == "photo":
        return PhotoAugmenter(config, generator, data.frame_size, data.crop_size or data.frame_size)
    return BatchAugmenter(config, generator) if config.enabled else None
