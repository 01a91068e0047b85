"""Artifacts as plain tensors and strings, read back with ``torch.load(weights_only=True)``.

No class is pickled, so an artifact written by one version of the code loads in another, and a
tampered artifact cannot execute code when a step reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from typing import Any, ClassVar

import torch
from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from graft.data.dataset import ImageDataset, TargetSplits
from graft.models.bundle import ModelBundle
from graft.transfer import CandidateSet

STATE_FILE = "state.pt"


class _TensorStateMixin:
    uri: str

    def _path(self) -> str:
        return os.path.join(self.uri, STATE_FILE)

    def load(self, data_type: type[Any]) -> Any:
        with fileio.open(self._path(), "rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), weights_only=True, map_location="cpu")
        return data_type.from_state(state)

    def save(self, data: Any) -> None:
        buffer = io.BytesIO()
        torch.save(data.to_state(), buffer)
        with fileio.open(self._path(), "wb") as handle:
            handle.write(buffer.getvalue())

    def compute_content_hash(self, data: Any) -> str | None:
        # Downstream steps are cached by value: same data, same hash, whatever run produced it.
        buffer = io.BytesIO()
        torch.save(data.to_state(), buffer)
        return hashlib.sha256(buffer.getvalue()).hexdigest()


SHARED_SHARDS = "graft-shards"


class GraftDataMaterializer(_TensorStateMixin, BaseMaterializer):
    """Datasets travel as their index and shard locations, never their pixels. On ZenML's own local
    store the shards stay in this machine's decode cache. Any other store (a folder the team shares,
    S3, GCS) may be read by another container, pod or host, so the shards are first copied next to
    the artifacts (content-addressed, once each) and the artifact points there."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ImageDataset, TargetSplits)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def _portable(self, data: Any) -> Any:
        if self.artifact_store.flavor == "local":
            return data
        folder = f"{str(self.artifact_store.path).rstrip('/')}/{SHARED_SHARDS}"
        if isinstance(data, ImageDataset):
            return data.on_store(folder)
        return dataclasses.replace(data, dataset=data.dataset.on_store(folder))

    def save(self, data: Any) -> None:
        super().save(self._portable(data))

    def compute_content_hash(self, data: Any) -> str | None:
        return super().compute_content_hash(self._portable(data))

    def extract_metadata(self, data: Any) -> dict[str, Any]:
        dataset = data if isinstance(data, ImageDataset) else data.dataset
        metadata: dict[str, Any] = {"images": len(dataset), "classes": dataset.num_classes, "fingerprint": dataset.fingerprint}
        if isinstance(data, TargetSplits):
            metadata.update({f"{split}_images": data.size(split) for split in data.indices})
        return metadata


class GraftModelMaterializer(_TensorStateMixin, BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ModelBundle, CandidateSet)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL
