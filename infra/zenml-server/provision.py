"""Provision graft's team ZenML server: the pipeline's service account and its API key, and the team stacks.

Run as the admin against a started server (start.sh); everything goes through the server's REST
API, so it works the same for a server on another host:

  GRAFT_ZENML_URL=http://127.0.0.1:8237 GRAFT_ZENML_ADMIN_PASSWORD=... GRAFT_PIPELINE_PASSWORD=... \\
  python infra/zenml-server/provision.py --key-file ~/.config/graft/zenml-api-key \\
      --artifact-store /srv/graft/artifacts --tracking-uri http://127.0.0.1:5000

- service account ``graft-pipeline`` (not an admin: runs pipelines, cannot manage users) with the
  API key ``graft``, written to --key-file with mode 600 (kept when the file already holds a key
  the server accepts; --rotate-key replaces it). Pipelines set ZENML_STORE_API_KEY to it.
- the flavor ``graft_shared_folder`` and the artifact store ``graft-shared`` on --artifact-store,
  a folder every host mounts at that path (pipelines/shared_store.py);
- the experiment tracker ``graft-mlflow-team``: --tracking-uri, credentials as references to the
  ZenML secret ``graft-mlflow``, created here from GRAFT_PIPELINE_USER (graft-pipeline) and
  GRAFT_PIPELINE_PASSWORD, the MLflow pipeline user (infra/mlflow-server/provision.py);
- the orchestrator ``graft-docker`` (local_docker: host network, so steps reach both servers on
  127.0.0.1, and the artifact folder mounted at its own path);
- the stacks ``graft-team`` (steps in the client's process) and ``graft-team-docker`` (every step
  in the step image, see configs/local-docker.yaml).
Idempotent: components that exist are updated to these settings.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = "graft-pipeline"
API_KEY_NAME = "graft"
ARTIFACT_STORE = "graft-shared"
TRACKER = "graft-mlflow-team"
DOCKER_ORCHESTRATOR = "graft-docker"


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"error: set {name}")
    return value


def connect_as_admin(url: str, password: str) -> None:
    """A throw-away ZenML client config, logged in as the admin (set before zenml is imported)."""
    os.environ["ZENML_CONFIG_PATH"] = tempfile.mkdtemp(prefix="graft-zenml-admin-")
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ["ZENML_STORE_URL"] = url
    os.environ["ZENML_STORE_USERNAME"] = os.environ.get("GRAFT_ZENML_ADMIN_USER", "admin")
    os.environ["ZENML_STORE_PASSWORD"] = password
    os.environ.pop("ZENML_STORE_API_KEY", None)


def key_works(url: str, key: str) -> bool:
    import requests

    response = requests.post(f"{url}/api/v1/login", data={"grant_type": "zenml-api-key", "password": key}, timeout=30)
    return response.status_code == 200


def ensure_service_account(client, url: str, key_file: Path, rotate: bool) -> None:
    try:
        client.get_service_account(SERVICE_ACCOUNT, allow_name_prefix_match=False)
    except KeyError:
        client.create_service_account(SERVICE_ACCOUNT, description="graft pipelines (runs, artifacts, models)")
    if key_file.is_file() and not rotate and key_works(url, key_file.read_text().strip()):
        print(f"{SERVICE_ACCOUNT}: API key in {key_file} still valid")
        return
    try:
        client.delete_api_key(SERVICE_ACCOUNT, API_KEY_NAME)
    except KeyError:
        pass
    key = client.create_api_key(SERVICE_ACCOUNT, API_KEY_NAME, description="graft run").key
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    os.chmod(key_file, 0o600)
    print(f"{SERVICE_ACCOUNT}: new API key written to {key_file} (mode 600)")


def ensure_component(client, name: str, component_type, flavor: str, configuration: dict) -> None:
    existing = {component.name for component in client.list_stack_components(type=component_type, name=name).items}
    if name in existing:
        client.update_stack_component(name, component_type=component_type, configuration=configuration)
    else:
        client.create_stack_component(name=name, flavor=flavor, component_type=component_type, configuration=configuration)


def ensure_stack(client, name: str, components: dict) -> None:
    if any(stack.name == name for stack in client.list_stacks(name=name).items):
        client.update_stack(name, component_updates={key: [value] for key, value in components.items()})
    else:
        client.create_stack(name=name, components=components)


def ensure_mlflow_secret(client) -> None:
    """The MLflow pipeline user's credentials as the ZenML secret the tracker refers to (steps in
    containers and pods read them from the server)."""
    from pipelines.stack import CREDENTIALS_SECRET

    values = {"username": os.environ.get("GRAFT_PIPELINE_USER", "graft-pipeline"), "password": _env("GRAFT_PIPELINE_PASSWORD")}
    try:
        secret = client.get_secret(CREDENTIALS_SECRET, allow_partial_name_match=False)
    except KeyError:
        client.create_secret(CREDENTIALS_SECRET, values=values)
        return
    if secret.secret_values != values:
        client.update_secret(secret.id, add_or_update_values=values)


def ensure_stacks(client, artifact_path: str, tracking_uri: str) -> None:
    from zenml.enums import StackComponentType as T
    from zenml.utils import source_utils

    sys.path.insert(0, str(ROOT))
    source_utils.set_custom_source_root(str(ROOT))
    from pipelines.shared_store import FLAVOR
    from pipelines.stack import CREDENTIAL_REFERENCES, is_remote

    if not any(flavor.name == FLAVOR for flavor in client.list_flavors(name=FLAVOR, type=T.ARTIFACT_STORE).items):
        client.create_flavor(source="pipelines.shared_store.SharedFolderArtifactStoreFlavor", component_type=T.ARTIFACT_STORE)
    Path(artifact_path).mkdir(parents=True, exist_ok=True)
    ensure_component(client, ARTIFACT_STORE, T.ARTIFACT_STORE, FLAVOR, {"path": artifact_path})
    if is_remote(tracking_uri):
        ensure_mlflow_secret(client)
    tracker = {"tracking_uri": tracking_uri, **(CREDENTIAL_REFERENCES if is_remote(tracking_uri) else {})}
    ensure_component(client, TRACKER, T.EXPERIMENT_TRACKER, "mlflow", tracker)
    run_args = {"network_mode": "host", "volumes": {artifact_path: {"bind": artifact_path, "mode": "rw"}}}
    ensure_component(client, DOCKER_ORCHESTRATOR, T.ORCHESTRATOR, "local_docker", {"run_args": run_args})
    shared = {T.ARTIFACT_STORE: ARTIFACT_STORE, T.EXPERIMENT_TRACKER: TRACKER}
    ensure_stack(client, "graft-team", {T.ORCHESTRATOR: "default", **shared})
    ensure_stack(client, "graft-team-docker", {T.ORCHESTRATOR: DOCKER_ORCHESTRATOR, **shared})
    print(f"stacks graft-team and graft-team-docker: artifacts in {artifact_path}, MLflow at {tracking_uri}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-file", type=Path, required=True, help="where the service account's API key is kept (mode 600)")
    parser.add_argument("--rotate-key", action="store_true", help="replace the API key even if the file holds a valid one")
    parser.add_argument("--artifact-store", required=True, help="absolute path of the shared artifact folder")
    parser.add_argument("--tracking-uri", required=True, help="the team's MLflow tracking server")
    args = parser.parse_args()
    url = _env("GRAFT_ZENML_URL").rstrip("/")
    connect_as_admin(url, _env("GRAFT_ZENML_ADMIN_PASSWORD"))
    from zenml.client import Client

    client = Client()
    ensure_service_account(client, url, args.key_file.expanduser().resolve(), args.rotate_key)
    ensure_stacks(client, str(Path(args.artifact_store).expanduser().resolve()), args.tracking_uri)


if __name__ == "__main__":
    main()
