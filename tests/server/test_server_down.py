"""The tracking server goes down just as registration begins: one error line, nothing registered.

Deterministic: the pipeline runs in this process, and the first ``log_bundle`` call of the
register step stops the real server (stop.sh) before it talks to it, so every registry call
after that point meets a closed port. No timing, no sleeps.
"""

from __future__ import annotations

import os
from unittest import mock

import yaml

from graft.paths import configure_environment

configure_environment()  # before anything imports ZenML: its store is the session's GRAFT_HOME

from graft.registry import model_logging  # noqa: E402
from tests.e2e.helpers import assert_clean_failure, graft_in_process  # noqa: E402

# Fail each HTTP call at once instead of MLflow's default minutes of back-off against a closed port.
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def registry_state(server, model_name: str) -> tuple[list[str], dict[str, str]]:
    with server.as_user("admin", server.admin_password):
        client = server.client()
        versions = sorted(str(version.version) for version in client.search_model_versions(f"name='{model_name}'"))
        return versions, dict(client.get_registered_model(model_name).aliases)


def test_tracking_server_down_during_registration_is_one_line_and_registers_nothing(first_run, running_server, tmp_path):
    server = running_server
    assert first_run.result.returncode == 0, first_run.result.stderr[-2000:]
    versions_before, aliases_before = registry_state(server, first_run.model_name)
    assert "champion" in aliases_before  # there is a champion that must stay

    # The first run's config with no step retry, and a fine-tuning change so that fine-tuning runs
    # anew: its candidates are this run's, not the cached first run's reopened ones.
    settings = yaml.safe_load(first_run.config.read_text())
    settings["tracking"]["retry"] = {"max_retries": 0, "delay": 0, "backoff": 1}
    settings["finetune"]["patience"] = settings["finetune"]["patience"] + 1
    config = tmp_path / "down.yaml"
    config.write_text(yaml.safe_dump(settings))

    real_log_bundle = model_logging.log_bundle
    stopped = []

    def stop_server_then_log(*args, **kwargs):
        if not stopped:
            server.stop()
            stopped.append(True)
        return real_log_bundle(*args, **kwargs)

    with mock.patch.dict(os.environ, {**server.pipeline_env(), **FAIL_FAST}), mock.patch.object(
        model_logging, "log_bundle", side_effect=stop_server_then_log
    ):
        result = graft_in_process("run", "-c", str(config))
    assert stopped, (result.stdout + result.stderr)[-3000:]  # registration did begin
    line = assert_clean_failure(result, 4, server.url, "not reachable", first_run.model_name)
    assert "start the tracking server" in line

    assert not (server.home / "server.pid").exists()  # still down until the restart below
    server.start()
    assert registry_state(server, first_run.model_name) == (versions_before, aliases_before)
