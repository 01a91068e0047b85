"""The source model in MLflow: logged in the pretrain step's run and, with
``registry.source_model_name``, registered under ``registry.source_alias`` so that other pipelines
can start from it (``model.weights: models:/<name>@<alias>``): pretrain once, transfer to many."""

from __future__ import annotations

import torch

from graft.models.bundle import ModelBundle
from graft.registry import client, model_logging
from graft.registry.client import tracking_server_call


def example_images(bundle: ModelBundle, images: torch.Tensor | None) -> torch.Tensor:
    """A few stored-geometry images for the model's signature: the source's own, else mid-grey."""
    if images is not None and images.shape[0] > 0:
        return images[:4]
    spec = bundle.preprocessing
    return torch.full((2, spec.channels, spec.frame_size, spec.frame_size), 128, dtype=torch.uint8)


def log_source_model(bundle: ModelBundle, images: torch.Tensor | None, lineage: dict[str, str]):
    """Log the source model into the active run; returns MLflow's ``ModelInfo``."""
    with tracking_server_call("logging the source model"):
        return model_logging.log_bundle(bundle, "source_model", example_images(bundle, images), {"lineage": lineage})


def register_source_model(model_uri: str, name: str, alias: str, tags: dict[str, str]) -> str:
    """Register the logged source model and point ``alias`` at the new version; returns the version."""
    version = model_logging.register(model_uri, name, tags)
    with tracking_server_call(f"moving alias {alias} of {name}"):
        client.mlflow_client().set_registered_model_alias(name, alias, version)
    return version
