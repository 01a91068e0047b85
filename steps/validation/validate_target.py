from typing import Annotated

import mlflow
from zenml import step

from graft.config import config_from_dict
from graft.data.dataset import TargetSplits
from graft.data.sources import load_dataset
from graft.validation import gate_target, raise_if_failed
from steps.materializers import GraftDataMaterializer


@step(experiment_tracker=True, output_materializers={"target_splits": GraftDataMaterializer})
def validate_target(target: str, settings: dict) -> tuple[
    Annotated[TargetSplits, "target_splits"],
    Annotated[dict, "validation_report"],
]:
    """Load and split the target, then gate it with Great Expectations; a failure stops the run."""
    config = config_from_dict(settings)
    data = config.data
    dataset = load_dataset(target, "target", data.frame_size, data.content_box, data.channels)
    splits, report = gate_target(dataset, config)
    mlflow.log_dict(report.as_dict(), "validation/gate_summary.json")
    mlflow.log_dict(report.ge_result, "validation/ge_result.json")
    mlflow.set_tag("graft.validation", "passed" if report.success else "failed")
    raise_if_failed(report, target)
    return splits, report.as_dict()
