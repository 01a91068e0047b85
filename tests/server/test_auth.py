"""Basic auth on the server: no anonymous access, no default admin login, NO_PERMISSIONS by default."""

from __future__ import annotations

import secrets

import pytest
import requests

from tests.server.conftest import EXPERIMENT, PIPELINE_USER

SEARCH = "/api/2.0/mlflow/experiments/search"


def _get(server, path, auth=None, **params):
    return requests.get(server.url + path, params=params or {"max_results": 1}, auth=auth, timeout=30)


def test_anonymous_requests_are_refused(tracking_server):
    assert _get(tracking_server, SEARCH).status_code == 401
    registry = requests.get(tracking_server.url + "/api/2.0/mlflow/registered-models/search", timeout=30)
    assert registry.status_code == 401


def test_only_the_rotated_admin_password_works(tracking_server):
    assert _get(tracking_server, SEARCH, auth=("admin", "password")).status_code == 401  # the old shipped default
    assert _get(tracking_server, SEARCH, auth=("admin", tracking_server.bootstrap_password)).status_code == 401
    assert _get(tracking_server, SEARCH, auth=("admin", tracking_server.admin_password)).status_code == 200


def test_a_user_without_grants_can_neither_read_nor_move_the_champion(first_run, tracking_server):
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    assert first_run.result.returncode == 0, first_run.result.stderr[-2000:]
    outsider, password = f"outsider-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    with tracking_server.as_user("admin", tracking_server.admin_password):
        AuthServiceClient(tracking_server.url).create_user(outsider, password)
        champion = tracking_server.client().get_registered_model(first_run.model_name).aliases["champion"]

    # Positive control: the provisioned pipeline user reads the same experiment.
    pipeline_view = _get(tracking_server, "/api/2.0/mlflow/experiments/get-by-name", (PIPELINE_USER, tracking_server.pipeline_password), experiment_name=EXPERIMENT)
    assert pipeline_view.status_code == 200, pipeline_view.text

    denied = _get(tracking_server, "/api/2.0/mlflow/experiments/get-by-name", (outsider, password), experiment_name=EXPERIMENT)
    assert denied.status_code == 403, denied.text
    with tracking_server.as_user(outsider, password):
        client = tracking_server.client()
        with pytest.raises(MlflowException, match="403|PERMISSION_DENIED|Permission denied"):
            client.get_registered_model(first_run.model_name)
        with pytest.raises(MlflowException, match="403|PERMISSION_DENIED|Permission denied"):
            client.set_registered_model_alias(first_run.model_name, "champion", champion)
        with pytest.raises(MlflowException, match="403|PERMISSION_DENIED|Permission denied"):
            client.delete_registered_model_alias(first_run.model_name, "champion")
    with tracking_server.as_user("admin", tracking_server.admin_password):
        assert tracking_server.client().get_registered_model(first_run.model_name).aliases["champion"] == champion


def test_the_watch_reads_the_registry_through_rest_as_mlflow_does(first_run, tracking_server):
    """`graft watch` reads aliases and tags through the REST API with urllib: the same as MLflow's client."""
    from graft.registry.light_client import _from_mlflow, read_registry

    assert first_run.result.returncode == 0, first_run.result.stderr[-2000:]
    with tracking_server.as_user(PIPELINE_USER, tracking_server.pipeline_password):
        light = read_registry(tracking_server.url, first_run.model_name)
        assert light == _from_mlflow(tracking_server.url, first_run.model_name, None)
        assert "champion" in light.aliases and light.versions
    # A model nobody registered: MLflow answers 404 to a user who may read every model (the server
    # answers 403 to the pipeline user, which holds grants on its own models only).
    with tracking_server.as_user("admin", tracking_server.admin_password):
        assert read_registry(tracking_server.url, "graft-never-registered").versions == []
