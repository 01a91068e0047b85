"""A real ZenML server on MariaDB/MySQL for the session, started by infra/zenml-server.

Fresh database and MySQL user ``graft_zen_<random>`` (both dropped at teardown), a free port on
127.0.0.1, random admin/DB/JWT/encryption secrets, and provision.py as the admin: the service
account's API key (a 0600 file), the shared artifact folder, the team stacks pointing at the
session's MLflow server. Each "host" is a ``graft`` subprocess with its own GRAFT_HOME that reaches
the server through ZENML_STORE_URL and the service account's API key, as a team's machines do.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.e2e.helpers import REPO
from tests.services import require_service  # noqa: F401 (used here and by the server tests)

SCRIPTS = REPO / "infra" / "zenml-server"
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def mysql_admin():
    import pymysql

    try:
        return pymysql.connect(**MYSQL, autocommit=True, connect_timeout=5)
    except Exception as error:  # refused, auth
        require_service(f"MySQL/MariaDB at {MYSQL['host']}:{MYSQL['port']}", error)


@dataclass
class ZenServer:
    url: str
    port: int
    home: Path
    database: str
    artifacts: Path
    key_file: Path
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    db_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    encryption_key: str = field(default_factory=lambda: secrets.token_hex(32))

    def script_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHON": sys.executable,
            "GRAFT_MYSQL_HOST": MYSQL["host"],
            "GRAFT_MYSQL_PORT": str(MYSQL["port"]),
            "GRAFT_ZENML_DB_NAME": self.database,
            "GRAFT_ZENML_HOME": str(self.home),
            "GRAFT_ZENML_PORT": str(self.port),
            "GRAFT_ZENML_ADMIN_PASSWORD": self.admin_password,
            "GRAFT_ZENML_DB_PASSWORD": self.db_password,
            "GRAFT_ZENML_JWT_SECRET": self.jwt_secret,
            "GRAFT_ZENML_ENCRYPTION_KEY": self.encryption_key,
        }

    def start(self) -> None:
        result = subprocess.run([str(SCRIPTS / "start.sh")], env=self.script_env(), capture_output=True, text=True, timeout=400)
        assert result.returncode == 0, result.stdout + result.stderr

    def stop(self) -> None:
        result = subprocess.run([str(SCRIPTS / "stop.sh")], env=self.script_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

    def running(self) -> bool:
        return (self.home / "server.pid").exists()

    def provision(self, tracking_uri: str, pipeline_password: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(SCRIPTS / "provision.py"), "--key-file", str(self.key_file),
             "--artifact-store", str(self.artifacts), "--tracking-uri", tracking_uri],
            env={**os.environ, "GRAFT_ZENML_URL": self.url, "GRAFT_ZENML_ADMIN_PASSWORD": self.admin_password,
                 "GRAFT_PIPELINE_PASSWORD": pipeline_password},
            capture_output=True, text=True, timeout=300,
        )

    @property
    def api_key(self) -> str:
        return self.key_file.read_text().strip()

    def host_env(self, graft_home: Path) -> dict[str, str]:
        """What one host of the team sets: its own state folder, the server and the service account's key."""
        return {"GRAFT_HOME": str(graft_home), "ZENML_STORE_URL": self.url, "ZENML_STORE_API_KEY": self.api_key}

    def token(self, *, api_key: str | None = None) -> str:
        data = ({"grant_type": "zenml-api-key", "password": api_key} if api_key
                else {"grant_type": "password", "username": "admin", "password": self.admin_password})
        response = requests.post(f"{self.url}/api/v1/login", data=data, timeout=30)
        response.raise_for_status()
        return response.json()["access_token"]

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token()}"}
        return requests.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=60, **kwargs)

    def get(self, path: str, **params) -> dict:
        response = self.api("GET", path, params=params)
        response.raise_for_status()
        return response.json()

    def run(self, name: str):
        """The run named ``name``, as ZenML's own response model (parsed from the REST answer, hydrated)."""
        from zenml.models import PipelineRunResponse

        runs = self.get("/runs", name=name)["items"]
        assert len(runs) == 1, (name, runs)
        return PipelineRunResponse.model_validate(self.get(f"/runs/{runs[0]['id']}", hydrate=True))

    def steps(self, run_id) -> dict:
        from zenml.models import StepRunResponse

        items = self.get("/steps", pipeline_run_id=str(run_id), size=100)["items"]
        return {item["name"]: StepRunResponse.model_validate(self.get(f"/steps/{item['id']}", hydrate=True)) for item in items}


def start_zenml_server(tmp_path_factory, free_port, tracking_uri: str, pipeline_password: str):
    """Create the database, start, provision; returns the server and a teardown callable."""
    connection = mysql_admin()
    database = f"graft_zen_{secrets.token_hex(4)}"
    home = tmp_path_factory.mktemp("zenml-server")
    artifacts = tmp_path_factory.mktemp("team-artifacts")
    port = free_port()
    server = ZenServer(url=f"http://127.0.0.1:{port}", port=port, home=home / "server", database=database,
                       artifacts=artifacts, key_file=home / "keys" / "graft-pipeline.key")

    def teardown() -> None:
        try:
            if server.running():
                server.stop()
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
                for host in ("127.0.0.1", "localhost"):
                    cursor.execute("DROP USER IF EXISTS %s@%s", (database, host))
            connection.close()

    try:
        server.start()
        result = server.provision(tracking_uri, pipeline_password)
        assert result.returncode == 0, result.stdout + result.stderr
    except BaseException:
        teardown()
        raise
    return server, teardown
