from typing import Annotated

import mlflow
from zenml import step

from graft.config import config_from_dict
from graft.data.dataset import ImageDataset
from graft.models.bundle import ModelBundle
from graft.pretraining import pretrain_source
from graft.registry.run_logging import log_curves, log_history, log_params
from steps.materializers import GraftModelMaterializer


@step(experiment_tracker=True, output_materializers={"source_model": GraftModelMaterializer})
def pretrain(source_dataset: ImageDataset, settings: dict) -> tuple[
    Annotated[ModelBundle, "source_model"],
    Annotated[dict, "pretrain_metrics"],
]:
    """Train the backbone on the source data; returned on the CPU for any later step to load."""
    config = config_from_dict(settings)
    result = pretrain_source(source_dataset, config)
    log_params({"model": config.model.model_dump(), "pretrain": config.pretrain.model_dump()})
    log_history(result.training.history_dicts(), prefix="pretrain_")
    mlflow.log_metric("source_holdout_accuracy", result.holdout_accuracy)
    log_curves(result.training.history_dicts(), "source pretraining", "pretrain/curves.png")
    metrics = {
        "source_holdout_accuracy": result.holdout_accuracy,
        "train_images": result.train_images,
        "holdout_images": result.holdout_images,
        "seconds": result.training.seconds,
        "source_fingerprint": source_dataset.fingerprint,
    }
    return result.bundle, metrics
