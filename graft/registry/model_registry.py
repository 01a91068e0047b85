"""Logging candidates as MLflow models, registering versions, and moving aliases.

Aliases, not stages: ``champion`` is the serving model, ``previous_champion`` the one it
replaced, so a rollback is one alias move and no version is ever deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from graft.data.preprocessing import PreprocessingSpec, normalise
from graft.errors import GraftError, RegistryError, WeightsError, exception_chain
from graft.models.architectures import Classifier
from graft.models.bundle import ModelBundle

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"


@dataclass
class LoadedModel:
    model: Classifier
    class_names: list[str]
    preprocessing: PreprocessingSpec


def _client():
    import mlflow

    return mlflow.MlflowClient()


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


@contextmanager
def tracking_server_call(action: str) -> Iterator[None]:
    """Say in one line that the tracking server is down, and during what; every other error passes.

    MLflow reports a refused connection or a timeout as a long ``MlflowException`` (or a bare
    ``requests`` error from an artifact transfer); the user needs the server and what to do.
    """
    import mlflow

    try:
        yield
    except GraftError:
        raise  # already one line; its suppressed context would otherwise look unreachable again
    except Exception as error:
        if not _unreachable(error):
            raise
        raise RegistryError(
            f"MLflow at {mlflow.get_tracking_uri()} is not reachable while {action}; start the tracking server and run again"
        ) from None


def _unreachable(error: BaseException) -> bool:
    """MLflow wraps a refused connection or a timeout into a plain MlflowException; find it in the chain."""
    import requests

    unreachable = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)
    return any(isinstance(link, unreachable) for link in exception_chain(error))


PIPELINE_RUN_TAG = "graft.pipeline_run"


def version_of_pipeline_run(model_name: str, pipeline_run: str):
    """The version a pipeline run already registered, or None: what a retried register step reuses.

    MLflow writes a version and its tags in one transaction, so no version is ever left untagged
    by a process that died while registering. At most one matches: ``register_and_promote`` looks first.
    """
    if not pipeline_run:
        return None
    found = _client().search_model_versions(f"name = '{model_name}' and tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run}'")
    return min(found, key=lambda version: int(version.version)) if found else None


def aliases(model_name: str) -> dict[str, str]:
    """Alias to version for a registered model; empty when the model is not registered yet."""
    from mlflow.exceptions import MlflowException

    try:
        return {alias: str(version) for alias, version in _client().get_registered_model(model_name).aliases.items()}
    except MlflowException as error:
        if getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def champion_version(model_name: str) -> str | None:
    return aliases(model_name).get(CHAMPION)


def set_tags(model_name: str, version: str, tags: dict[str, str]) -> None:
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)


def move_champion(model_name: str, version: str, expected_champion: str | None) -> None:
    """Make ``version`` the champion and keep the one it replaces as ``previous_champion``.

    Call under ``graft.registry.locking.promotion_lock``; the champion is re-read first so a decision taken against a
    champion that has since moved is refused rather than applied.
    """
    client = _client()
    current = champion_version(model_name)
    if current != expected_champion:
        raise RegistryError(
            f"{model_name}: the champion moved from {expected_champion} to {current} during this run; run again"
        )
    if current is not None and current != version:
        client.set_registered_model_alias(model_name, PREVIOUS_CHAMPION, current)
    client.set_registered_model_alias(model_name, CHAMPION, version)


ROLLBACK_HOLD_TAG = "graft.rollback_hold"  # registered-model tag: {"version": ..., "lineage": ...}
LINEAGE_TAGS = ("graft.source_fingerprint", "graft.target_fingerprint", "graft.config_sha256", "graft.git_commit")


def lineage_key(tags: dict[str, str]) -> str:
    """What makes a retrained model the same model: source and target data, config and code."""
    return json.dumps([tags.get(name, "") for name in LINEAGE_TAGS])


def rollback_hold(model_name: str) -> dict | None:
    """The version the last rollback took out of service and its lineage, while the hold lasts."""
    from mlflow.exceptions import MlflowException

    try:
        value = (_client().get_registered_model(model_name).tags or {}).get(ROLLBACK_HOLD_TAG)
    except MlflowException as error:
        if getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None  # not registered yet: nothing was rolled back
        raise
    return json.loads(value) if value else None


def held_back_by(model_name: str, lineage: str) -> str | None:
    """The rolled-back version whose lineage a challenger shares (so it must not be promoted), or None."""
    hold = rollback_hold(model_name)
    return hold["version"] if hold and hold["lineage"] == lineage else None


def release_rollback(model_name: str) -> str | None:
    """Lift the hold of the last rollback; returns the version it held back, None when there was none."""
    with tracking_server_call(f"releasing the rollback hold of {model_name}"):
        hold = rollback_hold(model_name)
        if hold is not None:
            _client().delete_registered_model_tag(model_name, ROLLBACK_HOLD_TAG)
    return hold["version"] if hold else None


def rollback(model_name: str) -> tuple[str, str]:
    """Swap ``champion`` and ``previous_champion``; returns (old champion, new champion).

    The old champion's lineage is held back: a run on the same data, config and code would train
    the same model again, and it is not promoted until one of them changes or the hold is released.
    """
    with tracking_server_call(f"rolling back {model_name}"):
        current = aliases(model_name)
        if CHAMPION not in current:
            raise RegistryError(f"{model_name}: no champion to roll back; run `graft run` first")
        if PREVIOUS_CHAMPION not in current:
            raise RegistryError(f"{model_name}: no previous_champion to roll back to")
        client = _client()
        old, new = current[CHAMPION], current[PREVIOUS_CHAMPION]
        client.set_registered_model_alias(model_name, CHAMPION, new)
        client.set_registered_model_alias(model_name, PREVIOUS_CHAMPION, old)
        client.set_model_version_tag(model_name, new, "graft.rolled_back_from", old)
        lineage = lineage_key(client.get_model_version(model_name, old).tags or {})
        client.set_registered_model_tag(model_name, ROLLBACK_HOLD_TAG, json.dumps({"version": old, "lineage": lineage}))
    return old, new


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
        return str(_client().get_model_version_by_alias(name, alias).version)
    return reference.rsplit("/", 1)[-1]


@dataclass
class VersionSummary:
    version: str
    aliases: list[str]
    strategy: str
    metrics: dict[str, float]
    decision: str
    created: int


def list_versions(model_name: str) -> list[VersionSummary]:
    client = _client()
    alias_map = aliases(model_name)
    by_version: dict[str, list[str]] = {}
    for alias, version in alias_map.items():
        by_version.setdefault(version, []).append(alias)
    rows = []
    for version in client.search_model_versions(f"name='{model_name}'"):
        tags = version.tags or {}
        rows.append(
            VersionSummary(
                version=str(version.version),
                aliases=sorted(by_version.get(str(version.version), [])),
                strategy=tags.get("graft.strategy", ""),
                metrics=json.loads(tags.get("graft.test_metrics", "{}")),
                decision=tags.get("graft.promotion", ""),
                created=int(version.creation_timestamp or 0),
            )
        )
    return sorted(rows, key=lambda row: int(row.version))


def version_tags(model_name: str, version: str) -> dict[str, str]:
    return dict(_client().get_model_version(model_name, version).tags or {})


def version_tag_values(model_name: str, key: str) -> dict[str, str]:
    """Version -> value of tag ``key`` for every version of ``model_name`` that has it."""
    values = {}
    for version in _client().search_model_versions(f"name='{model_name}'"):
        value = (version.tags or {}).get(key)
        if value is not None:
            values[str(version.version)] = value
    return values
