"""graft on the team stack: a ZenML server on MariaDB beside the MLflow server, both started by
the infra scripts (tests/server/conftest.py), every ``graft`` run a subprocess acting as one host.

What is checked goes through the servers' own APIs: ZenML's REST API for runs, steps and
artifacts, MLflow's client for the registry.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import REPO, assert_clean_failure
from tests.server.conftest import TEAM_MODEL, team_graft

PIPELINE_STEPS = {"ingest_source", "pretrain", "validate_target", "finetune", "evaluate", "register"}


def champion(tracking_server, model_name: str) -> tuple[list[str], str | None]:
    with tracking_server.as_user("admin", tracking_server.admin_password):
        client = tracking_server.client()
        versions = sorted(str(version.version) for version in client.search_model_versions(f"name='{model_name}'"))
        return versions, client.get_registered_model(model_name).aliases.get("champion")


def output_uris(step) -> list[str]:
    return [artifact.uri for versions in step.get_resources().outputs.values() for artifact in versions]


def test_team_run_is_recorded_on_the_zenml_and_mlflow_servers(team_first_run, zenml_server, tracking_server):
    result = team_first_run.result
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    run = zenml_server.run(team_first_run.run_name)
    assert run.get_body().status.value == "completed"
    assert run.get_resources().user.name == "graft-pipeline"  # the service account ran it
    assert run.get_resources().stack.name == "graft-team"
    steps = zenml_server.steps(run.id)
    assert set(steps) == PIPELINE_STEPS
    # Cached is fine too: an earlier run of this session on the same stack (any host) may serve a step.
    assert {step.get_body().status.value for step in steps.values()} <= {"completed", "cached"}
    assert steps["register"].get_body().status.value == "completed"  # never cached: it publishes
    for name, step in steps.items():
        uris = output_uris(step)
        assert uris, name
        for uri in uris:  # stored in the team's shared artifact folder, readable from every host
            assert Path(uri).is_relative_to(zenml_server.artifacts) and Path(uri).exists(), (name, uri)

    versions, champion_version = champion(tracking_server, TEAM_MODEL)
    assert champion_version is not None and versions
    with tracking_server.as_user("admin", tracking_server.admin_password):
        registered = tracking_server.client().get_model_version(TEAM_MODEL, champion_version)
    assert registered.tags["graft.pipeline_run"] == str(run.id)  # the model points back at the ZenML run


def test_a_second_host_sees_the_first_hosts_runs_and_reuses_its_cached_steps(team_first_run, zenml_server, tracking_server, tmp_path):
    assert team_first_run.result.returncode == 0, team_first_run.result.stderr[-3000:]
    first = zenml_server.run(team_first_run.run_name)
    first_steps = zenml_server.steps(first.id)

    host_b = tmp_path / "host-b"
    result = team_graft(tracking_server, zenml_server, host_b, "run", "-c", str(team_first_run.config))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    second_name = type(team_first_run)(result, team_first_run.config, host_b).run_name
    second = zenml_server.run(second_name)
    second_steps = zenml_server.steps(second.id)
    for name in ("ingest_source", "pretrain"):  # same data, same settings: host A's outputs serve host B
        assert second_steps[name].get_body().status.value == "cached", name
        served_first = first_steps[name].get_metadata().original_step_run_id or first_steps[name].id
        assert second_steps[name].get_metadata().original_step_run_id == served_first, name

    # Each host's key sees both hosts' runs.
    token = zenml_server.token(api_key=zenml_server.api_key)
    listed = zenml_server.api("GET", "/runs", token=token, params={"size": 100}).json()["items"]
    assert {str(first.id), str(second.id)} <= {run["id"] for run in listed}


def test_the_service_account_runs_pipelines_but_cannot_manage_users(team_first_run, zenml_server):
    assert team_first_run.result.returncode == 0, team_first_run.result.stderr[-3000:]
    token = zenml_server.token(api_key=zenml_server.api_key)
    assert zenml_server.api("GET", "/runs", token=token).status_code == 200
    created = zenml_server.api("POST", "/users", token=token, json={"name": "intruder", "password": "x" * 16, "active": True, "is_admin": False})
    assert created.status_code == 403, created.text
    admin = zenml_server.get("/users", name="admin")["items"][0]
    promoted = zenml_server.api("PUT", f"/users/{admin['id']}", token=token, json={"password": "taken-over-1234"})
    assert promoted.status_code == 403, promoted.text
    assert zenml_server.get("/users", name="intruder")["items"] == []
    # ZenML's default admin password (empty) does not open the server: the script set its own.
    import requests

    default = requests.post(f"{zenml_server.url}/api/v1/login", data={"username": "admin", "password": ""}, timeout=30)
    assert default.status_code == 401


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_configured_zenml_server_that_is_down_is_one_line_exit_4_and_registers_nothing(team_first_run, zenml_server, tracking_server, tmp_path):
    before = champion(tracking_server, TEAM_MODEL)
    down = f"http://127.0.0.1:{_free_port()}"
    result = team_graft(tracking_server, zenml_server, tmp_path / "host", "run", "-c", str(team_first_run.config),
                        extra_env={"ZENML_STORE_URL": down})
    assert_clean_failure(result, 4, f"ZenML server at {down}", "not reachable")
    assert champion(tracking_server, TEAM_MODEL) == before


def test_zenml_server_stopped_mid_run_fails_cleanly_and_the_next_run_succeeds(team_first_run, running_zenml_server, tracking_server, tmp_path):
    zen = running_zenml_server
    assert team_first_run.result.returncode == 0, team_first_run.result.stderr[-3000:]
    before = champion(tracking_server, TEAM_MODEL)
    settings = yaml.safe_load(team_first_run.config.read_text())
    settings["finetune"]["patience"] += 2  # fine-tuning runs anew; ingest and pretrain come from the cache
    config = tmp_path / "mid-run.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, **tracking_server.pipeline_env(), **zen.host_env(tmp_path / "host"), "ZENML_LOGGING_VERBOSITY": "INFO"}
    process = subprocess.Popen([sys.executable, "-m", "graft.cli", "run", "-c", str(config)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "finetune" in line and "has started" in line:
                zen.stop()  # the server goes away while the step trains
                break
        output = "".join(seen) + process.communicate(timeout=900)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert not zen.running(), output[-4000:]
    result = subprocess.CompletedProcess(process.args, process.returncode, "", output)
    assert_clean_failure(result, 4, f"ZenML server at {zen.url}", "not reachable")
    assert champion(tracking_server, TEAM_MODEL) == before

    zen.start()
    again = team_graft(tracking_server, zen, tmp_path / "host", "run", "-c", str(config))
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
