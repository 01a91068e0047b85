"""A SQLite MLflow store with one stand-in model, and versions tagged as register_and_promote tags them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import mlflow

from graft.registry.model_logging import register
from graft.registry.tracking import ensure_experiment
from graft.registry.versions import PIPELINE_RUN_TAG


def stand_in_store(tmp_path_factory, experiment: str) -> Iterator[str]:
    """A fresh SQLite registry and one run whose artifact folder stands in for a logged model; yields its URI."""
    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    ensure_experiment(f"sqlite:///{root}/mlflow.db", experiment, root / "artifacts")
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_text("stand-in", "model/MLmodel")
    yield f"runs:/{run.info.run_id}/model"
    mlflow.set_tracking_uri(previous)


def register_decided(source: str, model: str, pipeline_run: str, promote: bool, champion_before: str | None, **tags: str) -> str:
    """What register_and_promote writes in its one registry transaction, before it moves the alias."""
    decision = {"promote": promote, "reason": "test", "metric": "accuracy", "challenger": 0.9, "baseline": 0.5, "champion": None}
    tags = {
        **tags,
        PIPELINE_RUN_TAG: pipeline_run,
        "graft.promotion_decision": json.dumps({**decision, "champion_before": champion_before}),
    }
    return register(source, model, tags)
