"""Rotate the MLflow admin password and provision graft's pipeline user (basic-auth server).

Run against a started server (start.sh); everything goes through MLflow's auth REST API as the
admin, so it works the same for a server on another host.

  MLFLOW_TRACKING_URI=http://127.0.0.1:5000 MLFLOW_ADMIN_PASSWORD=... \
  MLFLOW_ADMIN_NEW_PASSWORD=...            # optional: rotate the admin password first
  GRAFT_PIPELINE_USER=graft-pipeline GRAFT_PIPELINE_PASSWORD=... \
  python infra/mlflow-server/provision.py --experiment graft --model graft-digits

The default permission is NO_PERMISSIONS, so the pipeline user gets EDIT (create runs, log,
register versions, move aliases; not delete, not manage permissions) on exactly the experiment
and the registered model it needs; both are created here if missing so the admin owns them.
Idempotent: run it again for each further model, or to change the permission.
"""

from __future__ import annotations

import argparse
import os
import sys


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"error: set {name}")
    return value


def _as_admin(password: str) -> None:
    # The auth and tracking clients read basic-auth credentials from these two variables.
    os.environ["MLFLOW_TRACKING_USERNAME"] = os.environ.get("MLFLOW_ADMIN_USERNAME", "admin")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def rotate_admin_password(tracking_uri: str, current: str, new: str) -> None:
    from mlflow.server.auth.client import AuthServiceClient

    _as_admin(current)
    admin = os.environ["MLFLOW_TRACKING_USERNAME"]
    AuthServiceClient(tracking_uri).update_user_password(admin, new, current_password=current)
    _as_admin(new)


def ensure_user(tracking_uri: str, username: str, password: str) -> None:
    from mlflow.exceptions import RestException
    from mlflow.server.auth.client import AuthServiceClient

    auth = AuthServiceClient(tracking_uri)
    try:
        auth.get_user(username)
    except RestException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        auth.create_user(username, password)
        return
    auth.update_user_password(username, password)  # admin path: keeps the stored password in step


def grant_pipeline(tracking_uri: str, username: str, experiment: str, model: str, permission: str = "EDIT") -> None:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    try:
        client.get_registered_model(model)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(model)
    auth = AuthServiceClient(tracking_uri)
    grant(auth, username, "experiment", experiment_id, permission)
    grant(auth, username, "registered_model", model, permission)


def grant(auth, username: str, resource_type: str, resource_id: str, permission: str) -> None:
    """Grant, or change an earlier grant: the experiment is shared, so every further model meets its grant."""
    from mlflow.exceptions import RestException

    try:
        auth.grant_user_permission(username, resource_type, resource_id, permission)
        return
    except RestException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    if auth.get_user_permission(username, resource_type, resource_id).permission != permission:
        auth.revoke_user_permission(username, resource_type, resource_id)
        auth.grant_user_permission(username, resource_type, resource_id, permission)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="graft", help="MLflow experiment (tracking.experiment_name)")
    parser.add_argument("--model", required=True, help="registered model (registry.model_name)")
    parser.add_argument("--permission", default="EDIT", choices=["READ", "USE", "EDIT", "MANAGE"])
    args = parser.parse_args()
    tracking_uri = _env("MLFLOW_TRACKING_URI")
    admin_password = _env("MLFLOW_ADMIN_PASSWORD")
    new_password = os.environ.get("MLFLOW_ADMIN_NEW_PASSWORD")
    if new_password:
        rotate_admin_password(tracking_uri, admin_password, new_password)
        print("admin password rotated: store MLFLOW_ADMIN_NEW_PASSWORD as the new MLFLOW_ADMIN_PASSWORD")
    else:
        _as_admin(admin_password)
    user = _env("GRAFT_PIPELINE_USER")
    ensure_user(tracking_uri, user, _env("GRAFT_PIPELINE_PASSWORD"))
    grant_pipeline(tracking_uri, user, args.experiment, args.model, args.permission)
    print(f"{user}: {args.permission} on experiment {args.experiment!r} and registered model {args.model!r}")


if __name__ == "__main__":
    main()
