"""graft.data.preprocessing: the framing policy, channel matching and normalisation."""

from __future__ import annotations

import pytest
import torch

from graft.data.preprocessing import (
    PreprocessingSpec,
    frame_images,
    intensity_statistics,
    match_channels,
    normalise,
)


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    weights = image.float().mean(dim=0)
    total = weights.sum()
    ys = (weights.sum(dim=1) * torch.arange(weights.shape[0])).sum() / total
    xs = (weights.sum(dim=0) * torch.arange(weights.shape[1])).sum() / total
    return float(ys), float(xs)


def content_box(image: torch.Tensor, threshold: float = 0.5) -> tuple[int, int]:
    """Height and width of the region brighter than ``threshold`` times the peak."""
    weights = image.float().mean(dim=0)
    mask = weights > threshold * weights.max()
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def blank(n: int = 1, c: int = 1, h: int = 12, w: int = 12) -> torch.Tensor:
    return torch.zeros((n, c, h, w), dtype=torch.uint8)


def test_output_shape_and_dtype():
    images = blank(3, 1, 8, 8)
    images[:, :, 2:6, 3:5] = 255
    framed = frame_images(images, 28, 20)
    assert framed.shape == (3, 1, 28, 28)
    assert framed.dtype == torch.uint8


@pytest.mark.parametrize("frame, box", [(28, 20), (32, 24), (16, 16)])
def test_other_geometries(frame, box):
    images = blank(2, 3, 10, 7)
    images[:, :, 1:9, 2:6] = 180
    framed = frame_images(images, frame, box)
    assert framed.shape == (2, 3, frame, frame)
    assert max(content_box(framed[0])) == pytest.approx(box, abs=1)


def test_rejects_non_uint8_or_wrong_rank():
    with pytest.raises(ValueError):
        frame_images(torch.zeros(1, 1, 8, 8), 28, 20)
    with pytest.raises(ValueError):
        frame_images(torch.zeros(1, 8, 8, dtype=torch.uint8), 28, 20)


def test_empty_batch():
    framed = frame_images(torch.zeros((0, 3, 9, 9), dtype=torch.uint8), 28, 20)
    assert framed.shape == (0, 3, 28, 28)
    assert framed.dtype == torch.uint8


def test_content_is_centred_by_mass():
    images = blank(1, 1, 40, 40)
    images[0, 0, 2:10, 25:37] = 230  # content far off-centre, in the top right corner
    images[0, 0, 9:12, 25:28] = 120  # and lopsided
    framed = frame_images(images, 28, 20)[0]
    cy, cx = centre_of_mass(framed)
    assert cy == pytest.approx(13.5, abs=1.0)
    assert cx == pytest.approx(13.5, abs=1.0)


def test_longer_side_is_scaled_to_content_box():
    images = blank(1, 1, 8, 8)
    images[0, 0, 1:7, 2:6] = 255  # 6 tall, 4 wide
    framed = frame_images(images, 28, 20)[0]
    height, width = content_box(framed)
    assert height == pytest.approx(20, abs=1)
    assert width == pytest.approx(20 * 4 / 6, abs=1.5)


@pytest.mark.parametrize("shape", [(4, 12), (12, 4), (3, 15)])
def test_aspect_ratio_kept(shape):
    h, w = shape
    images = blank(1, 1, 20, 20)
    images[0, 0, 2 : 2 + h, 3 : 3 + w] = 200
    framed = frame_images(images, 28, 20)[0]
    out_h, out_w = content_box(framed)
    assert max(out_h, out_w) == pytest.approx(20, abs=1)
    assert out_w / out_h == pytest.approx(w / h, rel=0.2)


def test_blank_image_stays_blank():
    framed = frame_images(blank(2, 3, 9, 9), 28, 20)
    assert framed.shape == (2, 3, 28, 28)
    assert int(framed.max()) == 0


def test_faint_noise_below_threshold_does_not_widen_the_box():
    images = blank(1, 1, 30, 30)
    images[0, 0, 10:20, 12:17] = 250  # 10 tall, 5 wide
    images[0, 0, 0, 0] = 10  # below 10% of the peak: not content
    framed = frame_images(images, 28, 20)[0]
    out_h, out_w = content_box(framed)
    assert out_h == pytest.approx(20, abs=1)
    assert out_w == pytest.approx(10, abs=1.5)


def test_frames_each_image_independently():
    images = blank(2, 1, 10, 10)
    images[0, 0, 0:3, 0:3] = 255
    images[1, 0, 6:10, 5:10] = 100
    framed = frame_images(images, 28, 20)
    for index in range(2):
        alone = frame_images(images[index : index + 1], 28, 20)[0]
        assert torch.equal(framed[index], alone)


def test_mnist_like_digit_is_nearly_unchanged():
    """Framing an already framed 20x20-in-28x28 image is (almost) the identity."""
    image = blank(1, 1, 28, 28)
    image[0, 0, 4:24, 6:22] = 255  # 20 tall, 16 wide, centred
    framed = frame_images(image, 28, 20)
    assert (framed.int() - image.int()).abs().float().mean() < 8


def test_rgb_to_gray_uses_luma():
    images = torch.zeros((2, 3, 2, 2), dtype=torch.uint8)
    images[0, 0] = 255  # pure red
    images[1, 1] = 255  # pure green
    gray = match_channels(images, 1)
    assert gray.shape == (2, 1, 2, 2)
    assert gray.dtype == torch.uint8
    assert int(gray[0, 0, 0, 0]) == round(0.299 * 255)
    assert int(gray[1, 0, 0, 0]) == round(0.587 * 255)


def test_white_stays_white_in_gray():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert int(match_channels(images, 1).min()) == 255


def test_rgba_to_gray_ignores_alpha():
    images = torch.zeros((1, 4, 2, 2), dtype=torch.uint8)
    images[:, 2] = 200
    images[:, 3] = 255
    assert int(match_channels(images, 1)[0, 0, 0, 0]) == round(0.114 * 200)


def test_gray_to_rgb_repeats():
    images = torch.randint(0, 256, (3, 1, 5, 5), dtype=torch.uint8)
    rgb = match_channels(images, 3)
    assert rgb.shape == (3, 3, 5, 5)
    assert rgb.dtype == torch.uint8
    for channel in range(3):
        assert torch.equal(rgb[:, channel], images[:, 0])


def test_matching_channels_is_a_no_op():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(match_channels(images, 3), images)


def test_unsupported_channel_conversion():
    with pytest.raises(ValueError):
        match_channels(torch.zeros((1, 2, 4, 4), dtype=torch.uint8), 1)


def test_normalise_and_statistics():
    images = torch.tensor([0, 255, 0, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    mean, std = intensity_statistics(images)
    assert mean == pytest.approx(0.5)
    assert std == pytest.approx(torch.tensor([0.0, 1.0, 0.0, 1.0]).std().item())
    spec = PreprocessingSpec(mean=mean, std=std)
    out = normalise(images, spec)
    assert out.dtype == torch.float32
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(out.std()) == pytest.approx(1.0, abs=1e-5)
    assert images.dtype == torch.uint8 and int(images.max()) == 255  # input untouched


def test_statistics_of_constant_images_keep_std_positive():
    _, std = intensity_statistics(torch.full((2, 1, 3, 3), 7, dtype=torch.uint8))
    assert std > 0
