"""What each MLflow run records: parameters, per-epoch curves, metrics and figures."""

from __future__ import annotations

import json
from typing import Any

import matplotlib.pyplot as plt

from graft.reporting.figures import confusion_matrix_figure, training_curves


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


def log_params(values: dict[str, Any], prefix: str = "") -> None:
    import mlflow

    mlflow.log_params({key: value[:500] for key, value in flatten(values, prefix).items()})


def log_history(history: list[dict], prefix: str = "") -> None:
    import mlflow

    for record in history:
        mlflow.log_metrics(
            {
                f"{prefix}train_loss": record["train_loss"],
                f"{prefix}train_accuracy": record["train_accuracy"],
                f"{prefix}val_loss": record["val_loss"],
                f"{prefix}val_accuracy": record["val_accuracy"],
                f"{prefix}learning_rate": record["learning_rate"],
            },
            step=record["epoch"],
        )


def log_curves(history: list[dict], title: str, artifact_file: str) -> None:
    import mlflow

    figure = training_curves(history, title)
    mlflow.log_figure(figure, artifact_file)
    plt.close(figure)


def log_confusion_matrix(matrix: list[list[int]], class_names: list[str], title: str, artifact_file: str) -> None:
    import mlflow

    figure = confusion_matrix_figure(matrix, class_names, title)
    mlflow.log_figure(figure, artifact_file)
    plt.close(figure)


def log_prefixed_metrics(metrics: dict[str, float], prefix: str) -> None:
    import mlflow

    mlflow.log_metrics({f"{prefix}{key}": float(value) for key, value in metrics.items() if value is not None})
