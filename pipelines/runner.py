"""Run the transfer pipeline for a validated config and collect what the user needs to see."""

from __future__ import annotations

import time
from dataclasses import dataclass

from graft.config import GraftConfig
from graft.paths import configure_environment, project_root, resolve_tracking_uri


@dataclass
class RunOutcome:
    run_name: str
    status: str
    seconds: float
    steps: list[str]
    evaluation: dict
    promotion: dict
    validation: dict
    pretrain: dict
    tracking_uri: str


def run_transfer(config: GraftConfig, run_name: str | None = None, enable_cache: bool = True) -> RunOutcome:
    layout = configure_environment()
    tracking_uri = config.tracking.tracking_uri or resolve_tracking_uri(layout)

    from graft.registry.tracking import ensure_experiment

    ensure_experiment(tracking_uri, config.tracking.experiment_name, layout.mlflow_artifacts)

    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import MLFlowExperimentTrackerSettings
    from zenml.utils import source_utils

    from pipelines.stack import ensure_local_stack
    from pipelines.transfer_pipeline import transfer_pipeline

    source_utils.set_custom_source_root(str(project_root()))
    ensure_local_stack(tracking_uri)
    started = time.perf_counter()
    options = {
        "settings": {"experiment_tracker": MLFlowExperimentTrackerSettings(experiment_name=config.tracking.experiment_name)},
        "enable_cache": enable_cache,
    }
    if run_name:
        options["run_name"] = run_name
    run = transfer_pipeline.with_options(**options)(
        source=config.data.source, target=config.data.target, settings=config.model_dump(mode="json")
    )
    seconds = time.perf_counter() - started
    return collect_outcome(run, seconds, tracking_uri)


def collect_outcome(run, seconds: float, tracking_uri: str) -> RunOutcome:
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    steps = sorted(run.steps, key=lambda name: run.steps[name].start_time or 0)

    def output(step: str, name: str) -> dict:
        if step not in run.steps or name not in run.steps[step].outputs:
            return {}
        return run.steps[step].outputs[name][0].load()

    return RunOutcome(
        run_name=run.name,
        status=str(run.status.value),
        seconds=seconds,
        steps=steps,
        evaluation=output("evaluate", "evaluation"),
        promotion=output("register", "promotion"),
        validation=output("validate_target", "validation_report"),
        pretrain=output("pretrain", "pretrain_metrics"),
        tracking_uri=tracking_uri,
    )
