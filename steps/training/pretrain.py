from typing import Annotated

import mlflow
from zenml import step

from graft.data.dataset import ImageDataset
from graft.models.bundle import ModelBundle
from graft.pretraining import pretrain_source
from graft.registry.lineage import environment_tags
from graft.registry.run_logging import log_curves, log_history, log_params
from graft.registry.source_model import log_source_model, register_source_model
from graft.results import PretrainSummary
from graft.stage_settings import PretrainSettings
from steps.materializers import GraftModelMaterializer


@step(experiment_tracker=True, output_materializers={"source_model": GraftModelMaterializer})
def pretrain(
    source_dataset: ImageDataset, settings: PretrainSettings, source_model_name: str | None = None, source_alias: str = "source"
) -> tuple[
    Annotated[ModelBundle, "source_model"],
    Annotated[PretrainSummary, "pretrain_metrics"],
]:
    """The source model: initial weights trained on the source data (``pretrain.epochs: 0`` takes them
    as they are); logged to MLflow, registered as ``source_model_name@source_alias`` when set.
    Returned on the CPU for any later step to load."""
    result = pretrain_source(source_dataset, settings)
    log_params({"model": settings.model.model_dump(), "pretrain": settings.pretrain.model_dump()})
    mlflow.set_tags(result.lineage)
    if result.holdout_accuracy is not None:
        log_history(result.training.history_dicts(), prefix="pretrain_")
        mlflow.log_metric("source_holdout_accuracy", result.holdout_accuracy)
        log_curves(result.training.history_dicts(), "source pretraining", "pretrain/curves.png")
    info = log_source_model(result.bundle, source_dataset.images, result.lineage)
    registered = ""
    if source_model_name:
        tags = {**result.lineage, "graft.source_fingerprint": source_dataset.fingerprint, **environment_tags(settings)}
        registered = register_source_model(info.model_uri, source_model_name, source_alias, tags)
    metrics = PretrainSummary(
        source_holdout_accuracy=result.holdout_accuracy,
        train_images=result.train_images,
        holdout_images=result.holdout_images,
        seconds=result.training.seconds,
        source_fingerprint=source_dataset.fingerprint,
        lineage=result.lineage,
        source_model_uri=f"models:/{source_model_name}/{registered}" if registered else info.model_uri,
    )
    return result.bundle, metrics
