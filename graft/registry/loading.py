"""Loading registered models: as a module to predict with, or as a ``ModelBundle`` to transfer from."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from graft.data.preprocessing import PreprocessingSpec
from graft.errors import WeightsError
from graft.models.architectures import Classifier
from graft.models.bundle import ModelBundle
from graft.registry import client as registry_client
from graft.registry.client import tracking_server_call


@dataclass
class LoadedModel:
    model: Classifier
    class_names: list[str]
    preprocessing: PreprocessingSpec


def as_module(loaded) -> torch.nn.Module:
    """MLflow 3 logs PyTorch models as ``torch.export`` programs (pt2); call them as modules."""
    from torch.export import ExportedProgram

    if isinstance(loaded, ExportedProgram):
        return loaded.module()
    if isinstance(loaded, torch.fx.GraphModule):
        return loaded  # an exported graph is already in inference form and refuses .eval()
    return loaded.eval()


def load_registered(model_uri: str) -> LoadedModel:
    """Load a registered model with its class names and preprocessing."""
    import mlflow

    info = mlflow.models.get_model_info(model_uri)
    metadata = info.metadata or {}
    model = as_module(mlflow.pytorch.load_model(model_uri, map_location="cpu"))
    return LoadedModel(model=model, class_names=list(metadata["class_names"]), preprocessing=PreprocessingSpec(**metadata["preprocessing"]))


def load_registered_bundle(model_uri: str, origin: str | None = None) -> tuple[ModelBundle, str]:
    """A registered graft model as a ``ModelBundle`` (``head``, ``layer_groups()``), and its version.

    The registry holds a ``torch.export`` graph; its state dict keeps the ``Classifier``'s
    parameter names, and the model's metadata its architecture, classes and preprocessing, so
    the transferable model is rebuilt exactly.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from graft.models.architectures import ArchitectureSpec

    origin = origin or f"model.weights {model_uri}"
    try:
        with tracking_server_call(f"loading {model_uri}"):
            info = mlflow.models.get_model_info(model_uri)
            loaded = as_module(mlflow.pytorch.load_model(model_uri, map_location="cpu"))
    except MlflowException as error:
        first = str(error).strip().splitlines()[0][:200]
        raise WeightsError(f"{origin}: not found in the registry at {mlflow.get_tracking_uri()} ({first})") from None
    metadata = info.metadata or {}
    if "architecture" not in metadata:
        raise WeightsError(f"{origin}: not a graft model (no architecture in its metadata)")
    state = {key: value.detach().clone() for key, value in loaded.state_dict().items()}
    bundle = ModelBundle(
        spec=ArchitectureSpec(**metadata["architecture"]),
        state_dict=state,
        class_names=list(metadata["class_names"]),
        preprocessing=PreprocessingSpec(**metadata["preprocessing"]),
    )
    return bundle, _registered_version(model_uri)


def _registered_version(model_uri: str) -> str:
    """The version a ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` URI names."""
    reference = model_uri.removeprefix("models:/")
    if "@" in reference:
        name, alias = reference.split("@", 1)
        return str(registry_client.mlflow_client().get_model_version_by_alias(name, alias).version)
    return reference.rsplit("/", 1)[-1]
