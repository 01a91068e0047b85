"""Local runs whose process died (kill -9, OOM killer, power loss) are marked failed by the next run.

Nothing reports a SIGKILL: ZenML and MLflow would show such a run as running forever. Each local
``graft run`` leaves a claim (process id and host) in the state folder while it runs; the next run
on the same host fails the runs whose process is gone, then removes the claim. A claim from another
host, or whose process id is alive (even if reused by another program), is left alone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

UNFINISHED = ("initializing", "provisioning", "queued", "running", "retrying")


@contextmanager
def claim(claims: Path, run_name: str, experiment_name: str, model_name: str = "") -> Iterator[None]:
    """Record that this process runs ``run_name`` (registering ``model_name``) until it returns or raises."""
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / f"{run_name}.json"
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "experiment": experiment_name, "model": model_name}
    path.write_text(json.dumps(owner))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def fail_stale_runs(claims: Path, lock_dir: Path | None = None) -> list[str]:
    """Mark the dead runs of this host failed in ZenML and killed in MLflow, and reconcile a version one
    registered without moving ``champion`` (``graft.registry.orphans``); returns their names."""
    failed = []
    for path in sorted(claims.glob("*.json")) if claims.is_dir() else []:
        try:
            owner = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written, or already removed by a concurrent run
        if owner.get("host") != socket.gethostname() or process_alive(int(owner["pid"])):
            continue
        run_name = path.stem
        run_id = fail_zenml_run(run_name, f"process {owner['pid']} on {owner['host']} ended without reporting")
        kill_mlflow_runs(run_name, owner["experiment"])
        print(f"warning: pipeline run {run_name} was left running by a process that is gone; marked failed", file=sys.stderr)
        if run_id and owner.get("model") and lock_dir is not None:
            from graft.registry.orphans import reconcile_orphan

            line = reconcile_orphan(owner["model"], run_id, run_name, lock_dir)
            if line:
                print(f"warning: {line}", file=sys.stderr)
        path.unlink(missing_ok=True)
        failed.append(run_name)
    return failed


def fail_zenml_run(run_name: str, reason: str) -> str | None:
    """Fail the run and its unfinished steps; returns the run's id (what registered versions are tagged
    with), or None when ZenML never created it."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus
    from zenml.orchestrators import publish_utils
    from zenml.utils.time_utils import utc_now

    try:
        run = Client().get_pipeline_run(run_name)
    except KeyError:
        return None  # killed before ZenML created the run
    for step in run.steps.values():
        if str(step.status.value) in UNFINISHED:
            publish_utils.publish_failed_step_run(step.id)
    if str(Client().get_pipeline_run(run.id).status.value) in UNFINISHED:
        publish_utils.publish_pipeline_run_status_update(run.id, ExecutionStatus.FAILED, status_reason=reason, end_time=utc_now())
    return str(run.id)


def kill_mlflow_runs(run_name: str, experiment_name: str) -> None:
    """The pipeline's MLflow run (named after the ZenML run) and the runs nested under it."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return
    parents = client.search_runs([experiment.experiment_id], f"tags.mlflow.runName = '{run_name}'")
    for parent in parents:
        nested = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        for run in [parent, *nested]:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
