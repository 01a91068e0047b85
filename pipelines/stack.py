"""The local ZenML stack: default orchestrator and artifact store, plus the MLflow tracker.

Idempotent: it creates what is missing, updates the tracker if the tracking URI changed, and
activates the stack. All of it lives in ZENML_CONFIG_PATH, under the state folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from graft.errors import ConfigError, StateError

LOCAL_STACK = "graft-local"
TRACKER = "graft-mlflow"
# The same secret name and keys as infra/kubeflow_stack.sh: the tracker's config holds references
# to it, never the credentials themselves.
CREDENTIALS_SECRET = "graft-mlflow"
CREDENTIAL_REFERENCES = {
    "tracking_username": "{{" + CREDENTIALS_SECRET + ".username}}",
    "tracking_password": "{{" + CREDENTIALS_SECRET + ".password}}",
}


def is_remote(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def ensure_credentials_secret(tracking_uri: str) -> None:
    """Store MLFLOW_TRACKING_USERNAME/PASSWORD as the ZenML secret the remote tracker refers to.

    ZenML refuses a remote MLflow tracker without credentials; they come from the environment
    (never from a graft config) and are refreshed whenever they change.
    """
    from zenml.client import Client

    username = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not username or not password:
        raise ConfigError(
            f"tracking server {tracking_uri} needs MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "in the environment (see README, Production tracking server)"
        )
    client = Client()
    wanted = {"username": username, "password": password}
    try:
        secret = client.get_secret(CREDENTIALS_SECRET)
    except KeyError:
        try:
            client.create_secret(CREDENTIALS_SECRET, values=wanted)
            return
        except Exception:  # another pipeline on this store created it meanwhile (EntityExistsError)
            secret = client.get_secret(CREDENTIALS_SECRET)
    if secret.secret_values != wanted:
        client.update_secret(CREDENTIALS_SECRET, add_or_update_values=wanted)


STORE_SETUP_WAIT = 600.0  # seconds another process may take to create or migrate the stores


def prepare_stores(lock_dir: Path, tracking_uri: str, experiment_name: str, artifact_root: Path, local: bool) -> None:
    """Create (or migrate) MLflow's database and experiment, ZenML's store and, for ``local``, the
    local stack, one process of this host at a time.

    Two first runs on a fresh state folder would otherwise both migrate the same SQLite databases:
    the loser fails inside MLflow's migration ("duplicate column name") or reads ZenML's half-made
    store as one from a newer ZenML. Once the stores exist this takes well under a second.
    """
    from graft.registry.locking import exclusive_file_lock
    from graft.registry.tracking import ensure_experiment

    with exclusive_file_lock(lock_dir / "stores.lock", wait=STORE_SETUP_WAIT) as acquired:
        if not acquired:
            raise StateError(f"another graft process has been setting up the stores for over {STORE_SETUP_WAIT:.0f} s "
                             f"(lock {lock_dir / 'stores.lock'}); run again when it finishes")
        ensure_experiment(tracking_uri, experiment_name, artifact_root)
        from zenml.client import Client

        Client().zen_store  # creates or migrates ZenML's store now, under the lock
        if local:
            ensure_local_stack(tracking_uri)


def ensure_local_stack(tracking_uri: str) -> None:
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    tracker_type = StackComponentType.EXPERIMENT_TRACKER
    configuration = {"tracking_uri": tracking_uri}
    if is_remote(tracking_uri):
        ensure_credentials_secret(tracking_uri)
        configuration.update(CREDENTIAL_REFERENCES)
    existing = {component.name: component for component in client.list_stack_components(type=tracker_type, size=100).items}
    if TRACKER not in existing:
        client.create_stack_component(name=TRACKER, flavor="mlflow", component_type=tracker_type, configuration=configuration)
    else:
        current = existing[TRACKER].configuration
        if not is_remote(tracking_uri):  # update_stack_component merges: drop references left by a remote URI
            configuration.update({key: None for key in CREDENTIAL_REFERENCES if current.get(key)})
        if any(current.get(key) != value for key, value in configuration.items()):
            client.update_stack_component(TRACKER, component_type=tracker_type, configuration=configuration)
    stacks = {stack.name for stack in client.list_stacks(size=100).items}
    if LOCAL_STACK not in stacks:
        client.create_stack(
            name=LOCAL_STACK,
            components={
                StackComponentType.ORCHESTRATOR: "default",
                StackComponentType.ARTIFACT_STORE: "default",
                tracker_type: TRACKER,
            },
        )
    if client.active_stack_model.name != LOCAL_STACK:
        client.activate_stack(LOCAL_STACK)
    forget_cached_stacks()  # the store may have changed since this process last built the stack


def forget_cached_stacks() -> None:
    """Make this process rebuild its stacks from the store at the next run.

    ZenML caches a process's ``Stack`` objects by the stack's id and update time, and updating a
    component (here, or by another graft process on the same store) does not touch the stack's
    update time: a long-lived process (``graft watch``, a test session) would go on running steps
    with the tracking URI it saw first.
    """
    from zenml.stack import stack as zenml_stack

    cache = getattr(zenml_stack, "_STACK_CACHE", None)
    if isinstance(cache, dict):
        cache.clear()
