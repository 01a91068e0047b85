"""One geometry for every domain, and the normalisation a model expects.

The policy (documented in the README): find the content's bounding box, scale its longer side to
``content_box`` pixels keeping the aspect ratio, and paste it into a ``frame_size`` square so that
its centre of mass sits at the centre. This is how MNIST itself was made (20x20 box in a 28x28
frame), so applying it to MNIST is nearly the identity, and it turns an 8x8 UCI digit into an
image of the same geometry as an MNIST digit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

CONTENT_THRESHOLD = 0.1  # fraction of the image's maximum intensity that counts as content


class PreprocessingSpec(BaseModel):
    """Travels with every model, so ``graft predict`` prepares images exactly as training did."""

    model_config = ConfigDict(frozen=True)

    frame_size: int = 28
    content_box: int = 20
    channels: int = 1
    mean: float = 0.0
    std: float = 1.0


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


def frame_images(images: torch.Tensor, frame_size: int, content_box: int) -> torch.Tensor:
    """Apply the framing policy to a uint8 ``(N, C, H, W)`` batch; returns ``(N, C, F, F)`` uint8."""
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
    """uint8 batch (on any device) to the float input a model expects."""
    return standardise_(batch.float().div_(255.0), spec)


def standardise_(pixels: torch.Tensor, spec: PreprocessingSpec) -> torch.Tensor:
    """Float pixels in [0, 1] to model inputs, in place: for a batch tensor made for this purpose
    (the training loop's augmented batches), so no new tensor is allocated per operation."""
    return pixels.sub_(spec.mean).div_(spec.std)


def intensity_statistics(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of pixel intensities in [0, 1], for ``PreprocessingSpec``."""
    values = images.float().div(255.0)
    return float(values.mean()), float(values.std().clamp_min(1e-6))
