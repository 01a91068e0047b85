from typing import Annotated

import mlflow
from zenml import get_step_context, save_artifact, step
from zenml.types import HTMLString

from graft.config import RegistryConfig, TrackingConfig
from graft.data.dataset import TargetSplits
from graft.paths import state_layout
from graft.stage_settings import TargetSettings
from graft.validation.target_gate import raise_if_failed
from graft.results import ValidationSummary
from graft.validation.run import log_outcome_to_mlflow, previous_accepted_profile, validate_target_data
from steps.materializers import GraftDataMaterializer


@step(experiment_tracker=True, output_materializers={"target_splits": GraftDataMaterializer})
def validate_target(
    target: str, target_fingerprint: str, settings: TargetSettings, registry: RegistryConfig, tracking: TrackingConfig
) -> tuple[
    Annotated[TargetSplits, "target_splits"],
    Annotated[ValidationSummary, "validation_report"],
]:
    """Decode and split the target, then gate it with Great Expectations; a failure stops the run.

    ``target_fingerprint`` is not read: it is in the signature so that changed files miss the
    step cache even though the path is the same. The GE result and Data Docs are saved as ZenML
    artifacts and MLflow artifacts before a failure is raised, so a failed gate can be inspected.
    The report names its MLflow run, from which the register step copies the files into a later
    run that got this step from the cache.
    """
    run_name = get_step_context().pipeline_run.name
    active = mlflow.active_run()
    reference = previous_accepted_profile(
        tracking.experiment_name, registry.model_name, active.info.run_id if active else None
    )
    layout = state_layout()
    outcome = validate_target_data(
        target, settings, layout.reports / run_name / "validation", layout.data_cache / "decoded", reference, layout.digest_memo
    )
    log_outcome_to_mlflow(outcome, registry.model_name)
    save_artifact(outcome.report.ge_result, name="target_gate_result")
    page = outcome.data_docs_page()
    if page:
        save_artifact(HTMLString(page), name="target_data_docs")
    raise_if_failed(outcome.report, target)
    return outcome.splits, ValidationSummary.of(outcome.report, active.info.run_id if active else None)
