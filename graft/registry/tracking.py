"""Point MLflow at the configured store and make sure artifacts land in the state folder."""

from __future__ import annotations

from pathlib import Path

from graft.errors import RegistryError


def ensure_experiment(tracking_uri: str, experiment_name: str, artifact_root: Path) -> str:
    """Create the experiment if needed, with artifacts under ``artifact_root`` for local stores.

    A remote tracking server keeps its own artifact root; only SQLite stores get a local folder,
    so nothing is written next to the working directory (MLflow's ``./mlruns`` default).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if tracking_uri.startswith("sqlite:"):
            artifact_root.mkdir(parents=True, exist_ok=True)
            location = artifact_root.resolve().as_uri()
        return client.create_experiment(experiment_name, artifact_location=location)
    except MlflowException as error:
        raise RegistryError(f"MLflow at {tracking_uri}: {str(error).splitlines()[0]}") from None
    except Exception as error:  # connection refused, DNS, TLS: all mean the same to a user
        raise RegistryError(f"MLflow at {tracking_uri} is not reachable ({type(error).__name__}); start it or fix the URI") from None


def ui_command(tracking_uri: str, host: str, port: int) -> list[str] | None:
    """The ``mlflow ui`` command line on ``tracking_uri``; None for a tracking server (it has its own UI).

    The MLflow script of this environment, so the UI reads the store with the MLflow that wrote it.
    """
    import sys

    if tracking_uri.startswith(("http://", "https://")):
        return None
    mlflow_script = Path(sys.executable).with_name("mlflow")
    return [str(mlflow_script), "ui", "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port), "--workers", "1"]
