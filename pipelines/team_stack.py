"""The team stack on a ZenML server: runs, steps and artifacts recorded for every host.

graft uses a ZenML server when ZenML is configured for one: ``ZENML_STORE_URL`` (with
``ZENML_STORE_API_KEY``, the pipeline's service account) in the environment, or ``zenml login``
in the state folder. The stack itself is registered once by the operator
(infra/zenml-server/provision.py): a shared artifact store every host and step container mounts,
the MLflow tracker of the team's tracking server, and an orchestrator. A run only checks it and
activates it; without a server, graft keeps its local stack (pipelines/stack.py).
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request

from graft.errors import ConfigError, RegistryError, exception_chain

TEAM_STACK_ENV = "GRAFT_ZENML_STACK"
TEAM_STACK = "graft-team"
DOCKER_STACK = "graft-team-docker"
HEALTH_TIMEOUT_SECONDS = 10


def zenml_server_url() -> str | None:
    """The ZenML server this process is configured for, or None for a local store. Reads the
    configuration only: nothing connects."""
    from zenml.config.global_config import GlobalConfiguration
    from zenml.enums import StoreType

    store = GlobalConfiguration().store_configuration
    return store.url.rstrip("/") if store.type == StoreType.REST else None


def unreachable(url: str) -> str | None:
    """Why the server at ``url`` does not answer its health check, or None when it does."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=HEALTH_TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return str(reason).strip() or type(reason).__name__


def server_down(url: str, action: str) -> RegistryError | None:
    """The one-line error for a ZenML server that does not answer, or None when it does."""
    reason = unreachable(url)
    if reason is None:
        return None
    return RegistryError(f"ZenML server at {url} is not reachable while {action} ({reason}); start it and run again")


def require_server(url: str) -> None:
    error = server_down(url, "starting the run")
    if error is not None:
        raise error


def team_stack_name() -> str:
    return os.environ.get(TEAM_STACK_ENV, "").strip() or TEAM_STACK


def activate_team_stack(url: str, tracking_uri: str) -> str:
    """Check the provisioned team stack against this run's tracking URI and activate it.

    The stack is shared by every host: a run never changes it, and refuses to log to another
    tracking server than the stack's tracker.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType

    from pipelines.stack import ensure_credentials_secret, forget_cached_stacks, is_remote

    name = team_stack_name()
    client = Client()
    try:
        stack = client.get_stack(name, allow_name_prefix_match=False)
    except KeyError:
        raise ConfigError(
            f"ZenML server {url} has no stack {name!r}: register the team stack with infra/zenml-server/provision.py "
            f"(or set {TEAM_STACK_ENV} to an existing stack)"
        ) from None
    trackers = stack.components.get(StackComponentType.EXPERIMENT_TRACKER) or []
    stack_uri = trackers[0].configuration.get("tracking_uri") if trackers else None
    if stack_uri != tracking_uri:
        raise ConfigError(
            f"stack {name!r} on {url} logs to MLflow at {stack_uri}, but this run's tracking URI is {tracking_uri}: "
            "set GRAFT_TRACKING_URI (or tracking.tracking_uri) to the team's tracking server"
        )
    if is_remote(tracking_uri):
        ensure_credentials_secret(tracking_uri)
    if client.active_stack_model.id != stack.id:
        client.activate_stack(stack.id)
    forget_cached_stacks()
    return name


def _connection_failure(error: BaseException | None) -> bool:
    """Whether ``error`` (or what it was raised from/during) is a request that reached no server."""
    import requests

    return any(isinstance(link, (requests.exceptions.ConnectionError, ConnectionRefusedError)) for link in exception_chain(error))


class _ServerDownFilter(logging.Filter):
    """While a ZenML server is configured, a server that went away mid-run is reported in one line by
    the runner (``server_down``): drop ZenML's tracebacks of the requests that could not reach it."""

    def filter(self, record: logging.LogRecord) -> bool:
        candidates = [record.exc_info[1]] if record.exc_info else []
        candidates += [argument for argument in (record.args if isinstance(record.args, tuple) else ()) if isinstance(argument, BaseException)]
        return not any(_connection_failure(candidate) for candidate in candidates)


def quiet_server_failures() -> None:
    """Install the filter on the handlers ZenML logs through, and keep urllib3's retry warnings
    (one per attempt against a closed port) off the console."""
    for logger in (logging.getLogger(), logging.getLogger("zenml")):
        for handler in logger.handlers:
            if not any(isinstance(existing, _ServerDownFilter) for existing in handler.filters):
                handler.addFilter(_ServerDownFilter())
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
