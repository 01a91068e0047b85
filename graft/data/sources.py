"""Turn a ``--source``/``--target`` spec into an ``ImageDataset`` in the working geometry."""

from __future__ import annotations

from pathlib import Path

import torch

from graft.data.builtin import BUILTIN_DATASETS
from graft.data.dataset import ImageDataset, content_fingerprint
from graft.data.preprocessing import frame_images, match_channels
from graft.errors import DataError

BUILTIN_PREFIX = "builtin:"


def check_spec(spec: str, role: str) -> None:
    """Cheap check before a pipeline starts: the spec names something that exists."""
    if not spec or not spec.strip():
        raise DataError(f"--{role} is empty; give builtin:mnist, builtin:digits or a path")
    if spec.startswith(BUILTIN_PREFIX):
        name = spec.removeprefix(BUILTIN_PREFIX)
        if name not in BUILTIN_DATASETS:
            known = ", ".join(BUILTIN_PREFIX + key for key in sorted(BUILTIN_DATASETS))
            raise DataError(f"--{role} {spec}: unknown built-in dataset; choose one of {known}")
        return
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"--{role} {spec}: no such file or folder; give builtin:mnist, builtin:digits or a path")
    raise DataError(f"--{role} {spec}: only built-in datasets are supported in this version")


def data_fingerprint(spec: str, role: str = "target") -> str:
    """sha256 of the data a spec names (pixels or file bytes, and labels), whatever the working geometry.

    The same value becomes ``ImageDataset.fingerprint`` and the registry's lineage tags, so a
    watcher can compare the data on disk with what the champion was trained on.
    """
    check_spec(spec, role)
    images, labels, class_names = BUILTIN_DATASETS[spec.removeprefix(BUILTIN_PREFIX)]()
    return content_fingerprint(images, labels, class_names)


def load_dataset(spec: str, role: str, frame_size: int, content_box: int, channels: int) -> ImageDataset:
    """Load, decode and frame a dataset; raises ``DataError`` with a one-line reason."""
    check_spec(spec, role)
    images, labels, class_names = BUILTIN_DATASETS[spec.removeprefix(BUILTIN_PREFIX)]()
    fingerprint = content_fingerprint(images, labels, class_names)
    if images.shape[0] == 0:
        raise DataError(f"--{role} {spec}: the dataset holds no images")
    framed = frame_images(match_channels(images, channels), frame_size, content_box)
    return ImageDataset(
        images=framed, labels=labels.to(torch.int64), class_names=class_names, origin=spec, fingerprint=fingerprint
    )
