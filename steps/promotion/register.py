from typing import Annotated

import mlflow
from zenml import get_step_context, step

from graft.config import GraftConfig
from graft.data.dataset import TargetSplits
from graft.data.listing import ListingStore
from graft.history import HISTORY_TAGS, history_rows
from graft.paths import state_layout
from graft.registry.light_client import read_registry
from graft.registry.register_and_promote import Lineage, register_and_promote
from graft.reporting.html_report import write_run_report
from graft.results import Evaluation, PretrainSummary, PromotionRecord, ValidationSummary
from graft.transfer import CandidateSet
from graft.validation.run import attach_cached_validation


@step(experiment_tracker=True, enable_cache=False)
def register(
    candidates: CandidateSet,
    evaluation: Evaluation,
    target_splits: TargetSplits,
    pretrain_metrics: PretrainSummary,
    validation_report: ValidationSummary,
    config: GraftConfig,
) -> Annotated[PromotionRecord, "promotion"]:
    """Log every candidate as an MLflow model, register the best, move ``champion`` if it earned it."""
    active = mlflow.active_run()
    if active:
        validation_report = attach_cached_validation(validation_report, active.info.run_id)
    lineage = Lineage(
        source_fingerprint=pretrain_metrics.source_fingerprint,
        target_fingerprint=target_splits.dataset.fingerprint,
        pipeline_run=str(get_step_context().pipeline_run.id),
        parent_mlflow_run=active.info.run_id if active else "",
        source_weights={**pretrain_metrics.lineage, "graft.source_model": pretrain_metrics.source_model_uri},
    )
    layout = state_layout()
    record = register_and_promote(candidates, evaluation, target_splits, config, lineage, layout.locks, ListingStore(layout.data_cache / "listings"))
    mlflow.set_tags({"graft.promoted": str(record.promoted).lower(), "graft.registered_version": record.registered_version})
    mlflow.log_dict(record.model_dump(mode="json", exclude={"report_path"}), "promotion.json")
    run_name = get_step_context().pipeline_run.name
    path = layout.reports / f"{run_name}.html"
    report = write_run_report(
        path,
        run_name=run_name,
        config=config,
        source_fingerprint=lineage.source_fingerprint,
        target_fingerprint=lineage.target_fingerprint,
        pretrain=pretrain_metrics,
        validation=validation_report,
        evaluation=evaluation,
        histories={candidate.strategy: candidate.history for candidate in candidates.candidates},
        promotion=record,
        history=history_rows(read_registry(mlflow.get_tracking_uri(), config.registry.model_name, keys=HISTORY_TAGS)),
    )
    mlflow.log_text(report, "report.html")
    return record.model_copy(update={"report_path": str(path)})
