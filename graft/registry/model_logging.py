"""Logging candidates as MLflow models, with a lean input example, and registering them as versions."""

from __future__ import annotations

import numpy as np
import torch

from graft.data.preprocessing import normalise
from graft.models.bundle import ModelBundle
from graft.registry.client import tracking_server_call


EXAMPLE_VALUES = 16_384  # at most this many floats of input example, written as JSON (twice) by MLflow


def lean_input_example(example: np.ndarray) -> np.ndarray | None:
    """As many of the example images as fit ``EXAMPLE_VALUES`` floats (a few digits; none of a 224 px
    photo, whose shape the signature still records): kilobytes of JSON, not megabytes."""
    per_image = int(np.prod(example.shape[1:])) or 1
    keep = min(example.shape[0], EXAMPLE_VALUES // per_image)
    return example[:keep] if keep else None


def log_bundle(bundle: ModelBundle, name: str, example_images: torch.Tensor, extra_metadata: dict | None = None):
    """Log a bundle with ``mlflow.pytorch.log_model`` into the active run; returns its ``ModelInfo``.

    The signature describes the normalised float input; class names and preprocessing travel in
    the model's metadata so a consumer can prepare images and name predictions.
    """
    import mlflow
    import torchvision
    from mlflow.models import infer_signature

    model = bundle.build_model()
    inputs = normalise(example_images[:4], bundle.preprocessing)
    with torch.no_grad():
        outputs = model(inputs)
    example = inputs.numpy().astype(np.float32)
    signature = infer_signature(example, outputs.numpy().astype(np.float32))
    example = lean_input_example(example)
    metadata = {
        "class_names": list(bundle.class_names),
        "preprocessing": bundle.preprocessing.model_dump(),
        "architecture": bundle.spec.model_dump(),
        **(extra_metadata or {}),
    }
    return mlflow.pytorch.log_model(
        model,
        name=name,
        signature=signature,
        input_example=example,
        metadata=metadata,
        serialization_format="pt2",  # torch.export: no pickle, loads under MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"torchvision=={torchvision.__version__.split('+')[0]}"],
    )


def register(model_uri: str, model_name: str, tags: dict[str, str]) -> str:
    import mlflow

    with tracking_server_call(f"registering {model_name}"):
        version = mlflow.register_model(model_uri, model_name, tags=tags)
    return str(version.version)
