"""The one way into the MLflow registry: its client, and one line when the tracking server cannot be reached."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from graft.errors import GraftError, RegistryError, exception_chain


def mlflow_client():
    """The registry's client. Registry modules call it through this module, never a copied name, so patching
    ``graft.registry.client.mlflow_client`` reaches every registry call."""
    import mlflow

    return mlflow.MlflowClient()


@contextmanager
def tracking_server_call(action: str) -> Iterator[None]:
    """Say in one line that the tracking server is down, and during what; every other error passes.

    MLflow reports a refused connection or a timeout as a long ``MlflowException`` (or a bare
    ``requests`` error from an artifact transfer); the user needs the server and what to do.
    """
    import mlflow

    try:
        yield
    except GraftError:
        raise  # already one line; its suppressed context would otherwise look unreachable again
    except Exception as error:
        if not _unreachable(error):
            raise
        raise RegistryError(
            f"MLflow at {mlflow.get_tracking_uri()} is not reachable while {action}; start the tracking server and run again"
        ) from None


def _unreachable(error: BaseException) -> bool:
    """MLflow wraps a refused connection or a timeout into a plain MlflowException; find it in the chain."""
    import requests

    unreachable = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)
    return any(isinstance(link, unreachable) for link in exception_chain(error))
