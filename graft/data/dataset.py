"""Image datasets: decoded uint8 images, in shards on disk or in a tensor, never per-image objects.

Images are a uint8 tensor (built-in and test data) or ``ShardImages`` (the decode cache's shards,
read a batch at a time). Both classes convert to and from a plain dict of tensors and primitives
(``to_state`` / ``from_state``) that ``torch.load(weights_only=True)`` reads back without unpickling
code; for sharded images that dict holds the shard locations and the index, never the pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict

from graft.data.shards import ShardImages, iter_batches, publish_shards

Images = torch.Tensor | ShardImages


def content_fingerprint(images: Images, labels: torch.Tensor, class_names: list[str]) -> str:
    """sha256 of the images' shape and bytes (read a batch at a time), labels and class names."""
    digest = hashlib.sha256()
    digest.update(str(tuple(images.shape)).encode())
    for batch in iter_batches(images, 4096):
        digest.update(batch.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    digest.update("\x1f".join(class_names).encode())
    return digest.hexdigest()


def pixel_key(image: torch.Tensor) -> str:
    """sha256 of one decoded image's pixels with their shape: the image's identity across versions."""
    digest = hashlib.sha256(str(tuple(image.shape)).encode())
    digest.update(image.contiguous().numpy().tobytes())
    return digest.hexdigest()


PREDEFINED_SPLITS = ("train", "val", "test")
SPLIT_CODES = {None: -1, **{name: code for code, name in enumerate(PREDEFINED_SPLITS)}}


@dataclass
class ImageDataset:
    """Decoded images ``(N, C, H, W)`` uint8, integer labels into ``class_names``."""

    images: Images
    labels: torch.Tensor
    class_names: list[str]
    origin: str
    fingerprint: str = ""
    # Per image: -1, or the split the data itself assigns (see SPLIT_CODES).
    split_codes: torch.Tensor | None = None
    # Per image: sha256 of its decoded pixels (before framing), what splits and lineage key on.
    content_keys: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must hold one entry per image")
        self.labels = self.labels.to(torch.int64)
        if self.split_codes is None:
            self.split_codes = torch.full((self.images.shape[0],), -1, dtype=torch.int8)
        if self.split_codes.shape != self.labels.shape:
            raise ValueError("split_codes must hold one entry per image")
        if not self.fingerprint:
            self.fingerprint = content_fingerprint(self.images, self.labels, self.class_names)
        if self.content_keys is None:
            self.content_keys = [pixel_key(image) for image in self.images]
        if len(self.content_keys) != self.images.shape[0]:
            raise ValueError("content_keys must hold one entry per image")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self, indices: torch.Tensor | None = None) -> list[int]:
        labels = self.labels if indices is None else self.labels[indices]
        return torch.bincount(labels, minlength=self.num_classes).tolist()

    def to_state(self) -> dict:
        images = self.images
        return {
            "images": images if isinstance(images, torch.Tensor) else {"shards": images.to_state()},
            "labels": self.labels,
            "class_names": list(self.class_names),
            "origin": self.origin,
            "fingerprint": self.fingerprint,
            "split_codes": self.split_codes,
            "content_keys": list(self.content_keys),
        }

    @property
    def has_predefined_splits(self) -> bool:
        return bool((self.split_codes >= 0).any())

    def predefined(self, split: str) -> torch.Tensor:
        """Indices of the images the data itself puts in ``split``."""
        return torch.nonzero(self.split_codes == SPLIT_CODES[split]).flatten()

    def keys_of(self, indices: torch.Tensor) -> list[str]:
        return [self.content_keys[index] for index in indices.tolist()]

    def on_store(self, folder_uri: str) -> "ImageDataset":
        """The same dataset with its shards copied to ``folder_uri`` (an artifact store) and read from
        there, for machines that share no disk with this one; in-memory images travel as they are."""
        if not isinstance(self.images, ShardImages):
            return self
        return dataclasses.replace(self, images=publish_shards(self.images, folder_uri))

    @classmethod
    def from_state(cls, state: dict) -> "ImageDataset":
        images = state["images"]
        if isinstance(images, dict):
            images = ShardImages.from_state(images["shards"])
        return cls(**{**state, "images": images})


def subset(images: Images, indices: torch.Tensor) -> Images:
    """The images at ``indices``: a view for shards (nothing read), a gathered tensor otherwise."""
    return images.subset(indices) if isinstance(images, ShardImages) else images[indices]


SPLIT_NAMES = ("train", "unlabeled", "val", "test")


@dataclass
class TargetSplits:
    """The target dataset and the index sets the pipeline uses.

    ``train`` holds the labelled training images (the label budget), ``unlabeled`` the rest of the
    training pool, whose images (never labels) a strategy may use, e.g. for BatchNorm statistics.
    ``val`` selects models; ``test`` is touched only by the evaluate and register steps.
    """

    dataset: ImageDataset
    indices: dict[str, torch.Tensor] = field(default_factory=dict)
    labels_per_class: int | None = None

    def __post_init__(self) -> None:
        missing = [name for name in SPLIT_NAMES if name not in self.indices]
        if missing:
            raise ValueError(f"missing splits: {missing}")

    def images(self, split: str) -> torch.Tensor:
        """The split's images in memory: for small uses (examples, tests); training reads ``view``."""
        return self.dataset.images[self.indices[split]]

    def view(self, split: str) -> Images:
        """The split's images without reading them: a shard view, or the tensor's rows."""
        return subset(self.dataset.images, self.indices[split])

    def labels(self, split: str) -> torch.Tensor:
        return self.dataset.labels[self.indices[split]]

    def size(self, split: str) -> int:
        return int(self.indices[split].numel())

    def eval_set_hash(self) -> str:
        """Identifies the frozen test split: same images and labels, same hash."""
        test = self.indices["test"]
        return content_fingerprint(self.view("test"), self.dataset.labels[test], self.dataset.class_names)

    def to_state(self) -> dict:
        return {
            "dataset": self.dataset.to_state(),
            "indices": dict(self.indices),
            "labels_per_class": self.labels_per_class,
        }

    @classmethod
    def from_state(cls, state: dict) -> "TargetSplits":
        return cls(
            dataset=ImageDataset.from_state(state["dataset"]),
            indices=dict(state["indices"]),
            labels_per_class=state["labels_per_class"],
        )


class DataManifest(BaseModel):
    """What a decoded dataset is, without its pixels: small, readable in the dashboard, hashed by value."""

    model_config = ConfigDict(frozen=True)

    origin: str
    fingerprint: str
    images: int
    class_names: list[str]
    class_counts: list[int]
    predefined_splits: bool
    image_shape: list[int]

    @classmethod
    def of(cls, dataset: ImageDataset) -> "DataManifest":
        return cls(
            origin=dataset.origin,
            fingerprint=dataset.fingerprint,
            images=len(dataset),
            class_names=list(dataset.class_names),
            class_counts=dataset.class_counts(),
            predefined_splits=dataset.has_predefined_splits,
            image_shape=list(dataset.images.shape[1:]),
        )
