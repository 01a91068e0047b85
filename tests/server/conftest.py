"""A real basic-auth ``mlflow server`` on PostgreSQL for the session, started by infra/mlflow-server.

Fresh database ``graft_test_<random>`` (dropped at teardown), artifacts in a temp folder, a free
port on 127.0.0.1, admin password bootstrapped then rotated, and a pipeline user provisioned by
infra/mlflow-server/provision.py. Skips only when PostgreSQL itself is not reachable (fails instead when CI is set).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from tests.e2e.helpers import REPO, graft, write_config
from tests.server.zenml_server import ZenServer, require_service, start_zenml_server

PG_URL = "postgresql://postgres@127.0.0.1:5432"
SCRIPTS = REPO / "infra" / "mlflow-server"
EXPERIMENT = "graft"
E2E_MODEL = "graft-server-e2e"
PIPELINE_USER = "graft-pipeline"
# Few epochs, two strategies: the server paths are under test here, not the training.
SMALL_STRATEGIES = {"scratch": {"epochs": 20, "learning_rate": 0.003}, "parameter": {"epochs": 15, "learning_rate": 0.001}}


@dataclass
class TrackingServer:
    url: str
    port: int
    home: Path
    artifacts: Path
    database: str
    bootstrap_password: str  # the admin password the server was first started with
    admin_password: str  # after rotation
    pipeline_password: str

    def script_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHON": sys.executable,
            "MLFLOW_PG_URL": PG_URL,
            "MLFLOW_DB_NAME": self.database,
            "MLFLOW_SERVER_HOME": str(self.home),
            "MLFLOW_ARTIFACTS_DIR": str(self.artifacts),
            "MLFLOW_PORT": str(self.port),
            "MLFLOW_WORKERS": "2",
            "MLFLOW_ADMIN_PASSWORD": self.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "graft-test-" + self.database,
        }

    def start(self) -> None:
        result = subprocess.run([str(SCRIPTS / "start.sh")], env=self.script_env(), capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr

    def stop(self) -> None:
        result = subprocess.run([str(SCRIPTS / "stop.sh")], env=self.script_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

    def pipeline_env(self) -> dict[str, str]:
        """What a graft process needs to use this server: the URI and the pipeline user's credentials."""
        return {
            "GRAFT_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_USERNAME": PIPELINE_USER,
            "MLFLOW_TRACKING_PASSWORD": self.pipeline_password,
        }

    @contextmanager
    def as_user(self, username: str, password: str) -> Iterator[None]:
        """MLflow's clients read basic-auth credentials from the environment at each request."""
        with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password}):
            yield

    def client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def provision(self, model_name: str) -> None:
        """What an operator does for another model: provision.py as the admin grants the pipeline user EDIT on it."""
        result = _provision(self.url, self.admin_password, model_name, self.pipeline_password)
        assert result.returncode == 0, result.stdout + result.stderr


def _provision(url: str, admin_password: str, model_name: str, pipeline_password: str, new_admin_password: str = "") -> subprocess.CompletedProcess:
    rotation = {"MLFLOW_ADMIN_NEW_PASSWORD": new_admin_password} if new_admin_password else {}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "provision.py"), "--experiment", EXPERIMENT, "--model", model_name],
        env={
            **{key: value for key, value in os.environ.items() if key != "MLFLOW_ADMIN_NEW_PASSWORD"},
            **rotation,
            "MLFLOW_TRACKING_URI": url,
            "MLFLOW_ADMIN_PASSWORD": admin_password,
            "GRAFT_PIPELINE_USER": PIPELINE_USER,
            "GRAFT_PIPELINE_PASSWORD": pipeline_password,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def _postgres_or_skip():
    try:
        import psycopg2

        connection = psycopg2.connect(f"{PG_URL}/postgres", connect_timeout=5)
    except Exception as error:  # not installed, refused, auth: no server tests without PostgreSQL
        require_service(f"PostgreSQL at {PG_URL}", error)
    connection.autocommit = True
    return connection


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory) -> Iterator[TrackingServer]:
    from psycopg2 import sql

    connection = _postgres_or_skip()
    database = f"graft_test_{secrets.token_hex(4)}"
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    home = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    server = TrackingServer(
        url=f"http://127.0.0.1:{port}",
        port=port,
        home=home,
        artifacts=home / "artifacts",
        database=database,
        bootstrap_password=secrets.token_urlsafe(16),
        admin_password=secrets.token_urlsafe(16),
        pipeline_password=secrets.token_urlsafe(16),
    )
    try:
        rotated = server.admin_password
        server.admin_password = server.bootstrap_password  # first start creates the admin with it
        server.start()
        provision = _provision(server.url, server.bootstrap_password, E2E_MODEL, server.pipeline_password, new_admin_password=rotated)
        assert provision.returncode == 0, provision.stdout + provision.stderr
        server.admin_password = rotated  # restarts pass the current password; it no longer bootstraps anything
        yield server
    finally:
        server.stop()
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        connection.close()


@pytest.fixture
def running_server(tracking_server) -> Iterator[TrackingServer]:
    """The session server, restarted afterwards if a test stopped it."""
    yield tracking_server
    if not (tracking_server.home / "server.pid").exists():
        tracking_server.start()


@dataclass
class FirstRun:
    result: subprocess.CompletedProcess
    config: Path
    model_name: str


def pipeline(server: TrackingServer, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    with mock.patch.dict(os.environ, server.pipeline_env()):
        return graft(*args, timeout=timeout)


@pytest.fixture(scope="session")
def first_run(tracking_server, tmp_path_factory) -> FirstRun:
    """One whole pipeline against the server; later tests reuse its cached ingest and pretrain."""
    config = write_config(tmp_path_factory.mktemp("config") / "server.yaml", E2E_MODEL, strategies=SMALL_STRATEGIES)
    result = pipeline(tracking_server, "run", "-c", str(config))
    return FirstRun(result, config, E2E_MODEL)


TEAM_MODEL = "graft-team-e2e"


@pytest.fixture(scope="session")
def zenml_server(tracking_server, tmp_path_factory) -> Iterator[ZenServer]:
    """The team's ZenML server (MariaDB), provisioned against the session's MLflow server."""
    tracking_server.provision(TEAM_MODEL)
    server, teardown = start_zenml_server(tmp_path_factory, _free_port, tracking_server.url, tracking_server.pipeline_password)
    try:
        yield server
    finally:
        teardown()


@pytest.fixture
def running_zenml_server(zenml_server) -> Iterator[ZenServer]:
    """The session's ZenML server, restarted afterwards if a test stopped it."""
    yield zenml_server
    if not zenml_server.running():
        zenml_server.start()


def team_graft(tracking: TrackingServer, zen: ZenServer, graft_home: Path, *args: str, timeout: int = 900,
               extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """``graft`` on one host of the team: its own state folder, both servers, the pipeline's credentials."""
    env = {**tracking.pipeline_env(), **zen.host_env(graft_home), **(extra_env or {})}
    with mock.patch.dict(os.environ, env):
        return graft(*args, timeout=timeout)


@dataclass
class TeamRun:
    result: subprocess.CompletedProcess
    config: Path
    home: Path

    @property
    def run_name(self) -> str:
        import re

        found = re.search(r"\b(graft-\d{8}-\d{6}-[0-9a-f]{6})\b", self.result.stdout + self.result.stderr)
        assert found, (self.result.stdout + self.result.stderr)[-3000:]
        return found.group(1)


@pytest.fixture(scope="session")
def team_first_run(tracking_server, zenml_server, tmp_path_factory) -> TeamRun:
    """Host A's whole pipeline on the team stack; later tests reuse its cached ingest and pretrain."""
    config = write_config(tmp_path_factory.mktemp("team-config") / "team.yaml", TEAM_MODEL, strategies=SMALL_STRATEGIES)
    home = tmp_path_factory.mktemp("host-a")
    result = team_graft(tracking_server, zenml_server, home, "run", "-c", str(config))
    return TeamRun(result, config, home)
