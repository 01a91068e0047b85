"""Two geometries (digits and photos), and the normalisation a model expects.

``digits`` (the demo's; documented in the README): find the content's bounding box, scale its longer side to
``content_box`` pixels keeping the aspect ratio, and paste it into a ``frame_size`` square so that
its centre of mass sits at the centre. This is how MNIST itself was made (20x20 box in a 28x28
frame), so applying it to MNIST is nearly the identity, and it turns an 8x8 UCI digit into an
image of the same geometry as an MNIST digit.

``photo``: the shorter side resized to ``frame_size`` and the centre square kept, as stored by
ingest; the model sees a ``crop_size`` crop of it: the centre for validation, test and predict
(torchvision's and timm's evaluation transform), a random resized crop for training
(``graft.training.photo_augment``). RGB stays RGB.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

CONTENT_THRESHOLD = 0.1  # fraction of the image's maximum intensity that counts as content


class PreprocessingSpec(BaseModel):
    """Travels with every model, so ``graft predict`` prepares images exactly as training did."""

    model_config = ConfigDict(frozen=True)

    frame_size: int = 28
    content_box: int = 20
    channels: int = 1
    mean: tuple[float, ...] = (0.0,)  # per channel; a single value (older models) serves every channel
    std: tuple[float, ...] = (1.0,)
    geometry: Literal["digits", "photo"] = "digits"
    crop_size: int | None = None  # photo: side of the model's input, cut from the frame_size square

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _per_channel(cls, value):
        return (float(value),) if isinstance(value, (int, float)) else value

    @model_validator(mode="after")
    def _one_value_per_channel(self) -> "PreprocessingSpec":
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) == 1 and self.channels > 1:
                object.__setattr__(self, name, values * self.channels)
            elif len(values) != self.channels:
                raise ValueError(f"{name} needs one value per channel ({self.channels}), got {len(values)}")
        if any(value <= 0 for value in self.std):
            raise ValueError("std must be positive")
        return self

    @property
    def input_size(self) -> int:
        """Side of the images the model takes."""
        return self.crop_size if self.geometry == "photo" and self.crop_size else self.frame_size


def _frame_one(image: torch.Tensor, frame_size: int, content_box: int) -> torch.Tensor:
    channels = image.shape[0]
    intensity = image.float().mean(dim=0)
    peak = float(intensity.max())
    framed = torch.zeros((channels, frame_size, frame_size), dtype=torch.float32)
    if peak <= 0:
        return framed.to(torch.uint8)
    rows = torch.nonzero((intensity > CONTENT_THRESHOLD * peak).any(dim=1)).flatten()
    cols = torch.nonzero((intensity > CONTENT_THRESHOLD * peak).any(dim=0)).flatten()
    crop = image[:, int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1].float()
    height, width = crop.shape[1:]
    scale = content_box / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = F.interpolate(crop[None], size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)[0]
    resized = resized.clamp(0, 255)
    weights = resized.mean(dim=0)
    total = float(weights.sum())
    if total > 0:
        centre_y = float((weights.sum(dim=1) * torch.arange(new_h)).sum()) / total
        centre_x = float((weights.sum(dim=0) * torch.arange(new_w)).sum()) / total
    else:
        centre_y, centre_x = (new_h - 1) / 2, (new_w - 1) / 2
    top = min(max(round((frame_size - 1) / 2 - centre_y), 0), frame_size - new_h)
    left = min(max(round((frame_size - 1) / 2 - centre_x), 0), frame_size - new_w)
    framed[:, top : top + new_h, left : left + new_w] = resized
    return framed.round().to(torch.uint8)


def resize_centre_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Photo geometry: the shorter side resized to ``size`` (bilinear, antialiased), the centre
    ``size`` x ``size`` square kept. uint8 ``(N, C, H, W)`` in, uint8 ``(N, C, size, size)`` out."""
    from torchvision.transforms.v2 import functional as TF

    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("resize_centre_square expects a uint8 (N, C, H, W) tensor")
    resized = TF.resize(images, [size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(resized, [size, size]).contiguous()


def centre_crop(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """The centre ``size`` square of a batch (itself when it is that size already, or ``size`` is None)."""
    if size is None or images.shape[-1] <= size and images.shape[-2] <= size:
        return images
    top, left = (images.shape[-2] - size) // 2, (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def frame_to_spec(images: torch.Tensor, spec: PreprocessingSpec) -> torch.Tensor:
    """Decoded uint8 images (any size and channel count) in the stored geometry of ``spec``."""
    images = match_channels(images, spec.channels)
    if spec.geometry == "photo":
        return resize_centre_square(images, spec.frame_size)
    return frame_images(images, spec.frame_size, spec.content_box)


def frame_images(images: torch.Tensor, frame_size: int, content_box: int) -> torch.Tensor:
    """Apply the digits framing policy to a uint8 ``(N, C, H, W)`` batch; returns ``(N, C, F, F)`` uint8."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("frame_images expects a uint8 (N, C, H, W) tensor")
    if images.shape[0] == 0:
        return torch.zeros((0, images.shape[1], frame_size, frame_size), dtype=torch.uint8)
    return torch.stack([_frame_one(image, frame_size, content_box) for image in images])


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Grayscale to RGB by repetition, RGB to grayscale by ITU-R 601 luma."""
    current = images.shape[1]
    if current == channels:
        return images
    if channels == 1 and current >= 3:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images[:, :3].float() * luma).sum(dim=1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if channels == 3 and current == 1:
        return images.repeat(1, 3, 1, 1)
    raise ValueError(f"cannot convert {current}-channel images to {channels} channels")


def normalise(batch: torch.Tensor, spec: PreprocessingSpec) -> torch.Tensor:
    """uint8 batch (on any device) to the float input a model expects (photos: the centre crop)."""
    if spec.geometry == "photo":
        batch = centre_crop(batch, spec.crop_size)
    return standardise_(batch.float().div_(255.0), spec)


def standardise_(pixels: torch.Tensor, spec: PreprocessingSpec) -> torch.Tensor:
    """Float pixels in [0, 1] to model inputs, in place: for a batch tensor made for this purpose
    (the training loop's augmented batches), so no new tensor is allocated per operation."""
    if len(set(spec.mean)) == 1 and len(set(spec.std)) == 1:
        return pixels.sub_(spec.mean[0]).div_(spec.std[0])
    shape = (1, -1, 1, 1) if pixels.ndim == 4 else (-1, 1, 1)
    mean = torch.tensor(spec.mean, dtype=pixels.dtype).view(shape).to(pixels.device, non_blocking=True)
    std = torch.tensor(spec.std, dtype=pixels.dtype).view(shape).to(pixels.device, non_blocking=True)
    return pixels.sub_(mean).div_(std)


def intensity_statistics(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of pixel intensities in [0, 1], for ``PreprocessingSpec``."""
    values = images.float().div(255.0)
    return float(values.mean()), float(values.std().clamp_min(1e-6))
