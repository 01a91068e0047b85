"""`graft ui` (and `make mlflow-ui`) open the MLflow UI on the store that `graft run` used: GRAFT_HOME's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.e2e.helpers import REPO

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ui_serves_the_registry_of_graft_home(tmp_path):
    home = tmp_path / "state"
    env = {**os.environ, "GRAFT_HOME": str(home)}
    env.pop("GRAFT_TRACKING_URI", None)
    # a registered model in this GRAFT_HOME's store, and in no other
    subprocess.run(
        [sys.executable, "-c", "from graft.paths import configure_environment, resolve_tracking_uri; import mlflow; "
         "mlflow.MlflowClient(resolve_tracking_uri(configure_environment())).create_registered_model('ui-only-here')"],
        cwd=REPO, env=env, check=True, capture_output=True, timeout=300,
    )
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "graft.cli", "ui", "--port", str(port)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/search"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    names = [model["name"] for model in json.load(response).get("registered_models", [])]
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                assert time.monotonic() < deadline, "the MLflow UI did not start in 180 s"
                time.sleep(1)
        assert names == ["ui-only-here"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
