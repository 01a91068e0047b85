"""The quick pipeline with ZenML's local_docker orchestrator: every step in the step image
(infra/docker/Dockerfile, built by infra/docker/build-image.sh on the local Debian base), against
the team's ZenML and MLflow servers. Behind the ``docker`` marker: ``make test-docker`` (and
.ci/run) runs it; the image is reused while the lock and the sources are unchanged.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.e2e.helpers import REPO, write_config
from tests.server.conftest import SMALL_STRATEGIES, team_graft
from tests.server.test_zenml_server import PIPELINE_STEPS, champion
from tests.server.zenml_server import require_service

pytestmark = pytest.mark.docker
DOCKER_MODEL = "graft-docker-e2e"


@pytest.fixture(scope="session")
def step_image() -> str:
    try:
        import docker

        docker.from_env().ping()
    except Exception as error:
        require_service("the Docker engine", error)
    build = subprocess.run([str(REPO / "infra" / "docker" / "build-image.sh")], cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    return build.stdout.strip().splitlines()[-1]


def test_every_step_runs_in_the_step_image_and_the_model_reaches_the_mlflow_server(step_image, zenml_server, tracking_server, tmp_path):
    import docker

    tracking_server.provision(DOCKER_MODEL)
    engine = docker.from_env()
    image_id = engine.images.get(step_image).id
    assert engine.images.get("graft-step:latest").id == image_id  # what configs/local-docker.yaml names
    config = write_config(tmp_path / "docker.yaml", DOCKER_MODEL, strategies=SMALL_STRATEGIES)
    started = time.time()
    result = team_graft(tracking_server, zenml_server, tmp_path / "host", "run", "-c", str(config), "--no-cache",
                        "--orchestration", str(REPO / "configs" / "local-docker.yaml"),
                        extra_env={"GRAFT_ZENML_STACK": "graft-team-docker"}, timeout=2400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    print(f"containerised run: {time.time() - started:.0f} s")
    run_name = result.stdout.split("Pipeline run ", 1)[1].split(":", 1)[0]
    run = zenml_server.run(run_name)
    assert run.get_body().status.value == "completed"
    assert run.get_resources().stack.name == "graft-team-docker"
    steps = zenml_server.steps(run.id)
    assert set(steps) == PIPELINE_STEPS and {step.get_body().status.value for step in steps.values()} == {"completed"}

    # One container per step, from the step image, each given this run's snapshot and its step.
    snapshot = str(run.get_resources().snapshot.id)
    containers = [c for c in engine.containers.list(all=True, filters={"ancestor": image_id}) if snapshot in c.attrs["Args"]]
    try:
        ran = {}
        for container in containers:
            args = container.attrs["Args"]
            ran[args[args.index("--step_name") + 1]] = container.attrs["State"]["ExitCode"]
            assert container.attrs["Image"] == image_id
            assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert ran == {name: 0 for name in PIPELINE_STEPS}, ran
    finally:
        for container in containers:
            container.remove(force=True)

    versions, champion_version = champion(tracking_server, DOCKER_MODEL)
    assert versions and champion_version is not None
    with tracking_server.as_user("admin", tracking_server.admin_password):
        registered = tracking_server.client().get_model_version(DOCKER_MODEL, champion_version)
    assert registered.tags["graft.pipeline_run"] == str(run.id)
    assert os.environ.get("GRAFT_ZENML_STACK") is None  # the host's own environment was left alone
