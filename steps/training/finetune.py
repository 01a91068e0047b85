from typing import Annotated

import mlflow
from zenml import step

from graft.data.dataset import TargetSplits
from graft.models.bundle import ModelBundle
from graft.registry.run_logging import log_curves, log_history, log_params
from graft.stage_settings import FinetuneSettings
from graft.transfer import CandidateSet, train_candidate
from steps.materializers import GraftModelMaterializer


@step(experiment_tracker=True, output_materializers=GraftModelMaterializer)
def finetune(source_model: ModelBundle, target_splits: TargetSplits, settings: FinetuneSettings) -> Annotated[CandidateSet, "candidates"]:
    """One candidate per strategy, each trained in its own MLflow run nested under the pipeline's."""
    candidates = []
    for strategy in settings.finetune.strategies:
        with mlflow.start_run(run_name=strategy, nested=True) as run:
            candidate = train_candidate(strategy, source_model, target_splits, settings)
            candidate.mlflow_run_id = run.info.run_id
            mlflow.set_tag("graft.strategy", strategy)
            log_params({**candidate.params, "labels_per_class": target_splits.labels_per_class, "seed": settings.seed})
            log_history(candidate.history)
            mlflow.log_metrics({"best_val_accuracy": candidate.val_accuracy, "train_seconds": candidate.seconds})
            log_curves(candidate.history, f"{strategy}: fine-tuning", "curves.png")
        candidates.append(candidate)
    return CandidateSet(candidates)
