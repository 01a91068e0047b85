"""Fault tolerance of the local pipeline: kill -9 and Ctrl-C during fine-tuning, transient registry errors.

The runs share the quick source config, so ingest and pretrain run once and later runs take them
from the step cache; the interrupted runs use their own fine-tuning budget so that their
``finetune`` step really runs (a cached one could not be interrupted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import mlflow
import pytest

from graft.config import load_config
from graft.paths import configure_environment, resolve_tracking_uri
from graft.registry import aliases, model_logging
from graft.registry.versions import PIPELINE_RUN_TAG
from tests.e2e.helpers import REPO, graft, registered_versions, write_config

pytestmark = pytest.mark.e2e
STRATEGIES = {"scratch": {"learning_rate": 0.003, "epochs": 100}, "parameter": {"learning_rate": 0.001, "epochs": 60}}
# Long enough to be interrupted (no early stop), and not another test file's fine-tuning cache key.
FINETUNE = {"epoch_scale": 0.6, "patience": 100}
RETRY = {"retry": {"max_retries": 2, "delay": 1, "backoff": 1}}


@pytest.fixture(scope="module", autouse=True)
def tracking():
    mlflow.set_tracking_uri(resolve_tracking_uri(configure_environment()))
    return mlflow.MlflowClient()


def start_graft(config: Path, log: Path) -> subprocess.Popen:
    """``graft run`` in its own process group, like a terminal job; output to a file, not a pipe.

    SIGINT starts at its default, as in a terminal, even where this test session inherited it
    ignored (a CI job a shell started in the background).
    """
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "graft.cli", "run", "--config", str(config)],
        cwd=REPO, env={**os.environ}, stdout=handle, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def running_finetune_steps() -> set:
    from zenml.client import Client

    return {step.id for step in Client().list_run_steps(name="finetune", status="running", size=100)}


def wait_for_training(process: subprocess.Popen, log: Path, already_running: set, tracking, timeout: float = 300):
    """This process's ``finetune`` step run, once it is RUNNING and a strategy's MLflow run has started."""
    from zenml.client import Client

    deadline = time.monotonic() + timeout
    step = None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"graft run ended before fine-tuning: {log.read_text()[-3000:]}"
        if step is None and (started := running_finetune_steps() - already_running):
            step = Client().get_run_step(started.pop())
        if step is not None:
            run_name = Client().get_pipeline_run(step.pipeline_run_id).name
            training = [run for run in mlflow_runs_of(tracking, run_name)[1:] if run.info.status == "RUNNING"]
            if training:
                time.sleep(1)  # into the training loop
                return step
        time.sleep(0.3)
    raise AssertionError(f"fine-tuning did not start within {timeout} s: {log.read_text()[-3000:]}")


def mlflow_runs_of(client: mlflow.MlflowClient, pipeline_run_name: str) -> list:
    """The pipeline's MLflow run (named after the ZenML run) and every run nested under it."""
    experiment = client.get_experiment_by_name("graft")
    if experiment is None:
        return []
    parents = client.search_runs([experiment.experiment_id], f"tags.mlflow.runName = '{pipeline_run_name}'")
    children = [
        child
        for parent in parents
        for child in client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    ]
    return parents + children


def test_ctrl_c_during_finetune_fails_the_run_cleanly(tmp_path, tracking):
    from zenml.client import Client

    model = "faults-ctrl-c"
    config = write_config(tmp_path / "cfg.yaml", model, STRATEGIES, finetune=FINETUNE)
    log = tmp_path / "run.log"
    process = start_graft(config, log)
    step = wait_for_training(process, log, running_finetune_steps(), tracking)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground group
    assert process.wait(timeout=120) == 130, log.read_text()[-3000:]
    output = log.read_text()
    assert output.rstrip().splitlines()[-1] == "interrupted", output[-3000:]
    assert output.count("Traceback") <= 1, output[-5000:]  # at most ZenML's own, never a second from graft

    run = Client().get_pipeline_run(step.pipeline_run_id)
    assert str(run.status.value) == "failed", run.status
    assert str(Client().get_run_step(step.id).status.value) == "failed"
    runs = mlflow_runs_of(tracking, run.name)
    assert runs, "no MLflow run recorded for the interrupted pipeline run"
    statuses = {found.info.run_name: found.info.status for found in runs}
    parent, *strategies = runs
    interrupted = max(strategies, key=lambda found: found.info.start_time)  # the one training at Ctrl-C
    assert parent.info.status == "FAILED", statuses
    assert interrupted.info.status == "FAILED", statuses
    assert {found.info.status for found in strategies if found is not interrupted} <= {"FINISHED"}, statuses
    assert registered_versions(model) == []


def test_kill_9_during_finetune_then_rerun_reuses_cache_and_registers_once(tmp_path, tracking):
    from zenml.client import Client

    model = "faults-kill"
    config = write_config(tmp_path / "cfg.yaml", model, STRATEGIES, finetune=FINETUNE)
    log = tmp_path / "killed.log"
    process = start_graft(config, log)
    step = wait_for_training(process, log, running_finetune_steps(), tracking)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    killed = Client().get_pipeline_run(step.pipeline_run_id)
    # Nothing reports a SIGKILL: ZenML and MLflow keep the dead run as running until the next run.
    assert str(killed.status.value) == "running"
    assert str(Client().get_run_step(step.id).status.value) == "running"
    assert "RUNNING" in {found.info.status for found in mlflow_runs_of(tracking, killed.name)}
    assert registered_versions(model) == []

    again = graft("run", "--config", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"pipeline run {killed.name} was left running" in again.stderr
    killed = Client().get_pipeline_run(killed.id)
    assert str(killed.status.value) == "failed"
    assert str(Client().get_run_step(step.id).status.value) == "failed"
    left = {found.info.run_name: found.info.status for found in mlflow_runs_of(tracking, killed.name)}
    assert "RUNNING" not in left.values() and "KILLED" in left.values(), left
    rerun = Client().get_pipeline("transfer_pipeline").last_run
    assert rerun.id != killed.id and str(rerun.status.value) == "completed"
    assert str(rerun.steps["ingest_source"].status.value) == "cached"
    assert str(rerun.steps["pretrain"].status.value) == "cached"
    assert str(rerun.steps["finetune"].status.value) == "completed"  # a killed step is never a cache hit
    versions = registered_versions(model)
    assert len(versions) == 1
    assert versions[0].tags[PIPELINE_RUN_TAG] == str(rerun.id)


def transient_failure():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    return MlflowException("API request to /api/2.0/mlflow/model-versions/create failed: connection reset by peer", TEMPORARILY_UNAVAILABLE)


def register_attempts(run) -> list[str]:
    from zenml.client import Client

    steps = Client().list_run_steps(name="register", pipeline_run_id=run.id, size=20, sort_by="created")
    return [str(step.status.value) for step in steps]


def run_in_process(tmp_path: Path, model: str):
    from pipelines.runner import run_transfer

    config = load_config(write_config(tmp_path / "cfg.yaml", model, STRATEGIES, finetune=FINETUNE, tracking=RETRY))
    outcome = run_transfer(config)
    from zenml.client import Client

    return outcome, Client().get_pipeline_run(outcome.run_name)


def test_transient_registry_error_is_retried(tmp_path):
    real_register = mlflow.register_model
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise transient_failure()
        return real_register(*args, **kwargs)

    with mock.patch("mlflow.register_model", side_effect=flaky):
        outcome, run = run_in_process(tmp_path, "faults-transient")
    assert outcome.status == "completed"
    assert len(calls) == 2
    assert register_attempts(run) == ["retried", "completed"]
    versions = registered_versions("faults-transient")
    assert [str(version.version) for version in versions] == [outcome.promotion.registered_version]


@pytest.mark.parametrize("fail_after", ["register", "move_champion"])
def test_failure_after_registering_reuses_the_version_and_moves_champion_once(tmp_path, fail_after):
    """The step dies after the version exists (before or after the alias moved); the retry finishes it."""
    model = f"faults-after-{fail_after.replace('_', '-')}"
    owners = {"register": model_logging, "move_champion": aliases}
    real = {name: getattr(module, name) for name, module in owners.items()}
    calls: dict[str, list] = {name: [] for name in real}

    def real_then_fail_once(name):
        def call(*args, **kwargs):
            result = real[name](*args, **kwargs)
            calls[name].append(args)
            if name == fail_after and len(calls[name]) == 1:
                raise transient_failure()  # done, but the step dies before it can say so
            return result

        return call

    with mock.patch.object(model_logging, "register", side_effect=real_then_fail_once("register")), mock.patch.object(
        aliases, "move_champion", side_effect=real_then_fail_once("move_champion")
    ):
        outcome, run = run_in_process(tmp_path, model)
    assert outcome.promotion.promoted, outcome.promotion  # a new model name: beating scratch is enough
    assert register_attempts(run) == ["retried", "completed"]
    versions = registered_versions(model)
    assert len(versions) == 1
    version = str(versions[0].version)
    assert outcome.promotion.registered_version == version
    assert len(calls["register"]) == 1  # the retry found the version instead of registering again
    assert len(calls["move_champion"]) == 1  # and moved the alias only if the first attempt had not
    assert aliases.aliases(model) == {"champion": version}
